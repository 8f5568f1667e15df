"""The services: gateway (FastAPI), scraper, labeler and trainer workers."""
