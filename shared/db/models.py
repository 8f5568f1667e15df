"""Metadata database: every arrow of the data flow is a row saying what went in, what came out,
and why something was rejected. Change a model here, then add an Alembic migration in migrations/.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, so migrations can address them on PostgreSQL and SQLite alike.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# JSONB on PostgreSQL (indexable, compact), plain JSON text on SQLite.
JSON_DOC = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON_DOC, list[Any]: JSON_DOC}


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class AssetStatus(enum.StrEnum):
    NEW = "new"
    EXTRACTED = "extracted"
    REJECTED = "rejected"
    FAILED = "failed"


class ExtractionStatus(enum.StrEnum):
    OK = "ok"
    REJECTED = "rejected"
    FAILED = "failed"


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # No heartbeat from the worker running it: it died (or lost the database). Redis redelivers
    # the task after the visibility timeout; the next attempt sets the job running again.
    WORKER_LOST = "worker_lost"
    # Recorded but not yet handed to the broker (it was away): the jobs table is the outbox, and
    # every worker's sweep sends such jobs once the broker answers again.
    UNSENT = "unsent"


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(
        cls,
        native_enum=False,
        length=16,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Source(Base, Timestamped):
    """Where assets come from (a GitHub search, Sketchfab, a local folder...) and its crawl state."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255), unique=True)
    base_url: Mapped[str | None] = mapped_column(Text)
    cursor: Mapped[dict[str, Any]] = mapped_column(default=dict, doc="Crawl state, so a crawl resumes.")


class Asset(Base, Timestamped):
    """One downloaded file, keyed by the sha256 of its bytes (also its blob key)."""

    __tablename__ = "assets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id"), index=True)
    source_url: Mapped[str | None] = mapped_column(Text, doc="URL at a commit or page URL.")
    source_commit: Mapped[str | None] = mapped_column(String(64))
    source_path: Mapped[str | None] = mapped_column(Text)
    license: Mapped[str] = mapped_column(String(64), doc="SPDX identifier.")
    author: Mapped[str | None] = mapped_column(String(255))
    attribution: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[AssetStatus] = mapped_column(_enum(AssetStatus), default=AssetStatus.NEW, index=True)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict, doc="Tags, description, category, pack...")

    source: Mapped[Source | None] = relationship()
    extractions: Mapped[list[Extraction]] = relationship(back_populates="asset")


class Extraction(Base, Timestamped):
    """One asset read by one extractor version: the scene document, or why there is none."""

    __tablename__ = "extractions"
    __table_args__ = (UniqueConstraint("asset_id", "extractor_version", name="uq_extractions_asset_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), index=True)
    extractor_version: Mapped[str] = mapped_column(String(32))
    status: Mapped[ExtractionStatus] = mapped_column(_enum(ExtractionStatus))
    error: Mapped[str | None] = mapped_column(Text)
    scene_key: Mapped[str | None] = mapped_column(String(64), doc="Blob key of the scene document.")
    preview_key: Mapped[str | None] = mapped_column(String(64), doc="Blob key of the preview PNG.")
    duration_s: Mapped[float | None] = mapped_column(Float)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)

    asset: Mapped[Asset] = relationship(back_populates="extractions")
    objects: Mapped[list[SceneObject]] = relationship(
        back_populates="extraction", cascade="all, delete-orphan"
    )


class SceneObject(Base, Timestamped):
    """One object of an extracted scene, with what labelling and filtering decided about it."""

    __tablename__ = "scene_objects"
    __table_args__ = (UniqueConstraint("extraction_id", "name", name="uq_scene_objects_extraction_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    extraction_id: Mapped[int] = mapped_column(ForeignKey("extractions.id", ondelete="CASCADE"), index=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32))
    vertex_count: Mapped[int] = mapped_column(Integer, default=0)
    face_count: Mapped[int] = mapped_column(Integer, default=0)
    triangle_count: Mapped[int] = mapped_column(Integer, default=0)
    material_count: Mapped[int] = mapped_column(Integer, default=0)
    modifier_count: Mapped[int] = mapped_column(Integer, default=0)
    has_animation: Mapped[bool] = mapped_column(Boolean, default=False)
    bbox_min: Mapped[list[Any] | None] = mapped_column()
    bbox_max: Mapped[list[Any] | None] = mapped_column()
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict, doc="Names, captions, confidences.")
    category: Mapped[str | None] = mapped_column(String(64), index=True)
    quality_flags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rejection_reason: Mapped[str | None] = mapped_column(Text, doc="Why the quality filter dropped it.")
    geometry_hash: Mapped[str | None] = mapped_column(String(64), index=True, doc="Exact-duplicate key.")

    extraction: Mapped[Extraction] = relationship(back_populates="objects")


class Dataset(Base, Timestamped):
    """One reproducible dataset version for one specialist."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("name", "version", "specialist", name="uq_datasets_name_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    specialist: Mapped[str] = mapped_column(String(16))
    seed: Mapped[int] = mapped_column(Integer)
    manifest_key: Mapped[str] = mapped_column(String(64), doc="Blob key of the manifest JSON.")
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)

    splits: Mapped[list[DatasetSplit]] = relationship(back_populates="dataset", cascade="all, delete-orphan")


class DatasetSplit(Base):
    __tablename__ = "dataset_splits"
    __table_args__ = (UniqueConstraint("dataset_id", "split", name="uq_dataset_splits_dataset_split"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    split: Mapped[str] = mapped_column(String(16))
    item_count: Mapped[int] = mapped_column(Integer)
    shard_keys: Mapped[list[Any]] = mapped_column(default=list)

    dataset: Mapped[Dataset] = relationship(back_populates="splits")


class TrainingRun(Base, Timestamped):
    __tablename__ = "training_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    specialist: Mapped[str] = mapped_column(String(16), index=True)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"))
    preset: Mapped[str] = mapped_column(String(32))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    code_version: Mapped[str | None] = mapped_column(String(64), doc="git commit of the training code.")
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus), default=RunStatus.QUEUED)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    checkpoint_key: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ModelVersion(Base, Timestamped):
    """A servable model: checkpoint plus its Triton model-repository entry."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("specialist", "version", name="uq_model_versions_specialist_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    specialist: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    training_run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id"))
    checkpoint_key: Mapped[str] = mapped_column(String(64))
    triton_repository_key: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Generation(Base, Timestamped):
    """One prompt served: what was asked, how long it took, where the scene is."""

    __tablename__ = "generations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    prompt: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus), default=RunStatus.QUEUED)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    result_key: Mapped[str | None] = mapped_column(String(64), doc="Blob key of the result scene(s).")
    error: Mapped[str | None] = mapped_column(Text)
    stage: Mapped[str | None] = mapped_column(String(32), doc="The specialist running now.")
    stages: Mapped[dict[str, Any]] = mapped_column(
        default=dict, doc="Per specialist: state (pending, running, done, failed) and seconds."
    )


class Job(Base, Timestamped):
    """A queued task as an operator sees it; the id is the Celery task id."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True, doc="Task name, e.g. extract.asset.")
    state: Mapped[JobState] = mapped_column(_enum(JobState), default=JobState.QUEUED, index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0, doc="Deliveries that started running.")
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column()
