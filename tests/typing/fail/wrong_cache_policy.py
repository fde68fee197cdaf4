from pepperpy_core.cache import FIFOCache
from pepperpy_core.module import CachedModule

CachedModule(policy="lru")  # E: Argument "policy" to "CachedModule" has incompatible type
CachedModule(ttl="60")  # E: Argument "ttl" to "CachedModule" has incompatible type
FIFOCache[str, int](10, ttl="60")  # E: Argument "ttl" to "FIFOCache" has incompatible type
FIFOCache[str, int](10).set("a", 1, ttl="1")  # E: Argument "ttl" to "set" of "FIFOCache"
