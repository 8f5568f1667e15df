"""Run the gateway as a plain process: ``python -m services.gateway``."""

import gc

import uvicorn

from services.gateway.app import create_app
from services.gateway.operations import configure_logging
from shared.db import ensure_schema
from shared.settings import get_settings

if __name__ == "__main__":
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    ensure_schema()
    app = create_app()
    # What start-up made (modules, the app, its clients) lives as long as the process: frozen, it
    # is left out of the cyclic collector's full passes, which walked it all (15 to 123 ms each,
    # three in a bench-serving run on the 2-core VM: a request caught by one waited that long).
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,  # the root logger's (JSON) handler; the gateway writes its own access lines
        access_log=False,
        timeout_graceful_shutdown=15,
    )
