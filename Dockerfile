# One image definition, one build target per service (docker compose picks the target), so the
# services share a cached base layer and each installs only its own extras from pyproject.toml.
FROM python:3.11.7-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BMT_DATA_DIR=/tmp/bmt
WORKDIR /app
RUN useradd --create-home --uid 10001 bmt
COPY pyproject.toml constraints.txt ./
COPY shared ./shared
COPY services ./services
COPY blender_worker ./blender_worker
COPY addon ./addon
COPY migrations ./migrations

FROM base AS gateway
RUN pip install -c constraints.txt ".[gateway]"
USER 10001
EXPOSE 8000
HEALTHCHECK CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"]
CMD ["python", "-m", "services.gateway"]

FROM base AS scraper
RUN pip install -c constraints.txt ".[scraper]"
USER 10001
CMD ["celery", "-A", "shared.queue", "worker", "-Q", "scrape", "--concurrency", "4"]

FROM base AS blender-worker
# bpy's wheel needs X11/GL client libraries even headless; assimp converts ASCII FBX files.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libx11-6 libxi6 libxxf86vm1 libxfixes3 libxrender1 libxkbcommon0 \
       libgl1 libegl1 libsm6 libice6 assimp-utils \
    && rm -rf /var/lib/apt/lists/*
RUN pip install -c constraints.txt ".[blender]"
USER 10001
CMD ["celery", "-A", "shared.queue", "worker", "-Q", "extract", "--concurrency", "2", "--max-tasks-per-child", "50"]

FROM base AS labeler
RUN pip install -c constraints.txt ".[labeler]"
USER 10001
ENV HF_HUB_OFFLINE=1
CMD ["celery", "-A", "shared.queue", "worker", "-Q", "label,dataset", "--concurrency", "2"]

FROM base AS trainer
RUN pip install -c constraints.txt ".[trainer]"
USER 10001
ENV HF_HUB_OFFLINE=1
CMD ["celery", "-A", "shared.queue", "worker", "-Q", "train", "--concurrency", "1"]

# Triton as bundled by nvidia-pytriton (its python backend runs the same GeometryGenerator the
# embedded mode uses), serving the committed checkpoint; gRPC 8001, HTTP 8010, metrics 8002.
FROM base AS serving
RUN pip install -c constraints.txt ".[serving]"
COPY models ./models
USER 10001
ENV HF_HUB_OFFLINE=1
EXPOSE 8001 8002 8010
HEALTHCHECK CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8010/v2/models/geometry/ready')"]
CMD ["python", "-m", "services.serving"]

FROM base AS migrate
RUN pip install -c constraints.txt .
USER 10001
CMD ["python", "-m", "shared.db", "upgrade"]
