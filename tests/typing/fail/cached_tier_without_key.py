from pepperpy_core.cache import FIFOCache, cached
from pepperpy_core.redis import RedisCache, TieredCache

tier = TieredCache[str](FIFOCache[str, str](100), RedisCache[str](url="redis://127.0.0.1"))


@cached(tier)  # E: Argument 1 to "cached" has incompatible type "TieredCache[str]"
async def report(report_id: int) -> str:
    return str(report_id)


def report_key(report_id: int) -> str:
    return f"report:{report_id}"


@cached(tier, key=report_key)  # E: incompatible type "Callable[[int], str]"
def sync_report(report_id: int) -> str:
    return str(report_id)
