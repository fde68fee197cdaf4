from aiohttp import web

from pepperpy_core import Application
from pepperpy_core.aiohttp import CORE, attach

site = web.Application()
attach(Application(), site)  # E: expected "aiohttp.web_app.Application"
attach(site, Application(), prefix=3)  # E: Argument "prefix" to "attach" has incompatible
port: int = site[CORE]  # E: Incompatible types in assignment (expression has type "Application"
