"""Migrations up and down on PostgreSQL and SQLite; the asset registry's idempotence."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import func, inspect, select

from services.scraper.items import Provenance
from shared.blobs import LocalBlobStore
from shared.db import alembic_config, ensure_schema, get_engine, session_scope
from shared.db.models import Asset, Base
from tests.asset_support import register_asset

TABLES = {
    "sources",
    "assets",
    "extractions",
    "scene_objects",
    "datasets",
    "dataset_splits",
    "training_runs",
    "model_versions",
    "generations",
    "jobs",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.sqlite3'}"
    return request.getfixturevalue("postgres_url")


def test_upgrade_from_empty_to_head_and_down_to_base(database_url: str):
    ensure_schema(database_url)
    inspector = inspect(get_engine(database_url))
    assert set(inspector.get_table_names()) >= TABLES
    assert {c["name"] for c in inspector.get_columns("assets")} >= {
        "sha256",
        "size",
        "format",
        "source_url",
        "source_commit",
        "license",
        "author",
        "attribution",
        "status",
    }
    command.downgrade(alembic_config(database_url), "base")
    assert set(inspect(get_engine(database_url)).get_table_names()) <= {"alembic_version"}
    ensure_schema(database_url)  # and back up again
    assert set(inspect(get_engine(database_url)).get_table_names()) >= TABLES


def test_migrations_match_the_models(database_url: str):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    ensure_schema(database_url)
    with get_engine(database_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models changed without a migration: {diff}"


def test_register_asset_is_idempotent_and_race_safe(database_url: str, tmp_path: Path):
    ensure_schema(database_url)
    store = LocalBlobStore(tmp_path / "blobs", 1 << 20)
    file = tmp_path / "chair.blend"
    file.write_bytes(b"BLENDER-v279 pretend")
    provenance = Provenance("local", "https://example.org/chair.blend", "CC0-1.0", author="Q")
    results: list[bool] = []

    def register() -> None:
        with session_scope(database_url) as session:
            results.append(register_asset(session, store, file, "blend", provenance)[1])

    threads = [threading.Thread(target=register) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    with session_scope(database_url) as session:
        assert session.scalar(select(func.count()).select_from(Asset)) == 1
        asset = session.scalars(select(Asset)).one()
        assert (asset.license, asset.author, asset.format, asset.size) == ("CC0-1.0", "Q", "blend", 20)
        assert store.exists(asset.sha256)
