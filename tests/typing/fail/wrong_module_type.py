from pepperpy_core import Application
from pepperpy_core.module import BaseModule


class Database(BaseModule): ...


class Cache(BaseModule): ...


core = Application(Database())
db: Cache = core.module(Database)  # E: Incompatible types in assignment
provided: Cache = core.provide(Database)()  # E: Incompatible types in assignment
core.module(Database, 3)  # E: has incompatible type "int"; expected "str | None"
