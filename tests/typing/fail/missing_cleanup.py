from pepperpy_core.protocols import Lifecycle


class OnlyStarts:
    async def initialize(self) -> None: ...


thing: Lifecycle = OnlyStarts()  # E: Incompatible types in assignment
