"""The spec's BaseModule, ModuleConfig and "Basic Module" examples, run as
written (spec/module.md), with stand-ins for the helpers it leaves undefined."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pepperpy_core.module import BaseModule, Module, ModuleConfig, ModuleState

events: list[str] = []


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def connect(host: str, port: int) -> Connection:
    await asyncio.sleep(0)
    return Connection(host, port)


# --- spec: BaseModule ---------------------------------------------------------


class CustomModule(BaseModule):
    async def initialize(self):
        # Module initialization
        await self.setup()

    async def cleanup(self):
        # Module cleanup
        await self.teardown()

    async def setup(self) -> None:  # stand-in
        events.append("setup")

    async def teardown(self) -> None:  # stand-in
        events.append("teardown")


def test_spec_base_module() -> None:
    events.clear()

    async def main() -> None:
        # Create and initialize module
        module = CustomModule()
        await module.initialize()
        assert module.state is ModuleState.READY
        assert await module.health_check() is True
        await module.cleanup()
        assert module.state is ModuleState.CLOSED

    asyncio.run(main())
    assert events == ["setup", "teardown"]


# --- spec: ModuleConfig --------------------------------------------------------


def test_spec_module_config() -> None:
    # Basic configuration
    config = ModuleConfig(name="custom", version="1.0.0", dependencies=[])
    config.validate()
    assert ModuleConfig.from_dict(config.to_dict()) == config


# --- spec: Basic Module ----------------------------------------------------------


@dataclass
class DBConfig:
    host: str
    port: int


class DatabaseModule(Module):
    def __init__(self, config: DBConfig):
        super().__init__()
        self.config = config
        self.connection = None

    async def initialize(self):
        # Connect to database
        self.connection = await connect(self.config.host, self.config.port)

    async def cleanup(self):
        # Close connection
        if self.connection:
            await self.connection.close()


def test_spec_basic_module() -> None:
    async def main() -> None:
        db = DatabaseModule(DBConfig(host="db.local", port=5432))
        assert db.name == "DatabaseModule"  # a plain config: the class names it
        async with db:
            assert db.connection is not None
            assert db.connection.address == ("db.local", 5432)
            assert db.state is ModuleState.READY
        assert db.connection.closed
        assert db.state is ModuleState.CLOSED

    asyncio.run(main())
