"""Fixtures that start or reach the real servers: PostgreSQL and Redis (running on these machines),
an S3-protocol server on loopback (moto, standing in for MinIO, which cannot be installed here).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from shared.settings import get_settings
from tools.servers import free_port, start_s3_server  # noqa: F401  (free_port is used by tests)

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("BMT_CORPUS_DIR", REPO.parent / "shared" / "corpus"))
POSTGRES_ADMIN = os.environ.get("BMT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BMT_TEST_REDIS", "redis://127.0.0.1:6379")


@pytest.fixture(autouse=True)
def embedded_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts on the embedded defaults, inside its own temporary folder."""
    for name in list(os.environ):
        if name.startswith("BMT_") and not name.startswith(("BMT_TEST_", "BMT_CORPUS_DIR")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BMT_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"bmt_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        from shared.db import _engine

        _engine.cache_clear()  # forget pooled connections before dropping
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The Redis server, with every queue key under a prefix of this test's own (other test runs may
    share the server), removed afterwards."""
    prefix = f"bmt-test-{uuid.uuid4().hex[:12]}:"
    monkeypatch.setenv("BMT_QUEUE_KEY_PREFIX", prefix)
    url = f"{REDIS_URL}/0"
    yield url
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-protocol HTTP server on loopback (moto), for the MinIO code path."""
    server, endpoint = start_s3_server()
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def geometry_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained small geometry model: serving must work whatever the weights (the grammar keeps
    every sample a valid mesh), and it loads in a fraction of a second."""
    import torch

    from shared.ml.geometry_model import GeometryModel, GeometryModelConfig, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("geometry") / "geometry.pt"
    save_checkpoint(
        path, GeometryModel(GeometryModelConfig(d_model=64, n_layers=2, n_heads=2, max_tokens=256))
    )
    return path
