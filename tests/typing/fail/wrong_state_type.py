from collections.abc import Callable

from pepperpy_core.module import StateModule
from pepperpy_core.protocols import StateStore


class StrStore:
    async def get_state(self) -> str:
        return ""

    async def set_state(self, state: str) -> None: ...

    async def update_state(self, updater: Callable[[str], str]) -> str:
        return ""


store: StateStore[int] = StrStore()  # E: Incompatible types in assignment


async def use() -> str:
    module: StateModule[int] = StateModule(initial=0)
    await module.set_state("not an int")  # E: has incompatible type "str"; expected "int"
    text: str = await module.get_state()  # E: Incompatible types in assignment
    return text
