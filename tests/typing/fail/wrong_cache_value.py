from pepperpy_core import FIFOCache
from pepperpy_core.protocols import CacheProtocol

cache: CacheProtocol[str, int] = FIFOCache[str, str](10)  # E: Incompatible types in assignment
typed = FIFOCache[str, int](10)
typed["a"] = "not an int"  # E: expression has type "str", target has type "int"
