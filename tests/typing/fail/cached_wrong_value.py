from collections.abc import Hashable

from pepperpy_core.cache import FIFOCache, LocalCache, cached

ints = FIFOCache[Hashable, int](100)


@cached(ints)  # E: incompatible type "Callable[[int], str]"
def name(user_id: int) -> str:
    return str(user_id)


@cached(LocalCache[Hashable, int](10))  # E: "Callable[[int], Coroutine[Any, Any, str]]"
async def fetch_name(user_id: int) -> str:
    return str(user_id)


@cached(ints)
def count(user_id: int) -> int:
    return user_id


label: str = count(1)  # E: Incompatible types in assignment
count("1")  # E: Argument 1 to "count" has incompatible type "str"
