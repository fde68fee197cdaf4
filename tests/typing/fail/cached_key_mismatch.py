from pepperpy_core.cache import FIFOCache, cached

names = FIFOCache[str, str](100)


def by_id(user_id: int) -> str:
    return f"user:{user_id}"


@cached(names, key=by_id)  # E: incompatible type "Callable[[str], str]"
def by_name(user_name: str) -> str:
    return user_name


@cached(names, key=by_id)  # E: incompatible type "Callable[[int, bool], str]"
def with_more(user_id: int, detail: bool) -> str:
    return str(user_id)


def number_key(user_id: int) -> int:
    return user_id


@cached(names, key=number_key)  # E: Cannot infer value of type parameter
def numbered(user_id: int) -> str:
    return str(user_id)
