from pepperpy_core.config import ModuleConfig
from pepperpy_core.module import CachedModule

CachedModule(ModuleConfig(name="a"), cache=[1, 2])  # E: Argument "cache" to "CachedModule"
