from fastapi import FastAPI

from pepperpy_core import Application
from pepperpy_core.asgi import make_asgi_app

core = Application()
api = FastAPI()
make_asgi_app(api)  # E: has incompatible type "FastAPI"; expected "Application"
