from pepperpy_core.module import CachedModule


async def load_age() -> int:
    return 36


async def main(m: CachedModule) -> None:
    name: str = await m.get_or_load("a", load_age)  # E: expected "Callable[[], Awaitable[str]]"
    print(name.upper())
