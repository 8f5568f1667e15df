"""Run the gateway as a plain process: ``python -m services.gateway``."""

import logging

import uvicorn

from shared.db import ensure_schema
from shared.settings import get_settings

if __name__ == "__main__":
    settings = get_settings()
    logging.basicConfig(level=settings.log_level)
    ensure_schema()
    uvicorn.run(
        "services.gateway.app:create_app",
        factory=True,
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_level=settings.log_level.lower(),
    )
