"""Run the gateway as a plain process: ``python -m services.gateway``."""

import uvicorn

from services.gateway.operations import configure_logging
from shared.db import ensure_schema
from shared.settings import get_settings

if __name__ == "__main__":
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    ensure_schema()
    uvicorn.run(
        "services.gateway.app:create_app",
        factory=True,
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,  # the root logger's (JSON) handler; the gateway writes its own access lines
        access_log=False,
        timeout_graceful_shutdown=15,
    )
