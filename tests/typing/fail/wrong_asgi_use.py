from fastapi import FastAPI

from pepperpy_core import Application
from pepperpy_core.asgi import RequestMetrics, make_asgi_app

core = Application()
api = FastAPI()
make_asgi_app(api)  # E: has incompatible type "FastAPI"; expected "Application"
RequestMetrics(api)  # E: Missing named argument "registry"
RequestMetrics(api, registry=core)  # E: expected "MetricsRegistry"
