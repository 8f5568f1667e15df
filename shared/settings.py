"""One settings object for every service, read from environment variables prefixed ``BMT_``.

The URLs pick the parts: the defaults run everything embedded in one process with no servers
(SQLite file, local blob folder, in-process tasks, in-process torch inference); production points
them at PostgreSQL, MinIO, Redis and Triton. The README's configuration table lists every field.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "BMT_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("var"), description="Where the embedded defaults keep their files.")
    database_url: str = Field(
        "",
        description="SQLAlchemy URL; default sqlite:///<data_dir>/metadata.sqlite3. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/db.",
    )
    blob_url: str = Field(
        "",
        description="file://<folder> (default <data_dir>/blobs) or "
        "s3://ACCESS_KEY:SECRET_KEY@host:port/bucket[?secure=true&region=R] for MinIO/S3.",
    )
    queue_url: str = Field(
        "memory://", description="memory:// runs tasks in-process; redis://host:6379/0 uses Celery workers."
    )
    queue_key_prefix: str = Field(
        "",
        description="Prefix of every Redis key the queue writes, so several deployments can share one Redis.",
    )
    result_url: str = Field("", description="Celery result backend; default: queue_url when it is Redis.")
    inference_url: str = Field(
        "local", description="local loads models in-process with torch; grpc://host:8001 calls Triton."
    )
    task_time_limit_s: int = Field(
        3600, description="Hard time limit per task; the worker process is killed."
    )
    task_soft_time_limit_s: int = Field(3300, description="Soft limit: the task gets SoftTimeLimitExceeded.")
    task_max_retries: int = Field(5, description="Retries for transient errors, with exponential backoff.")
    visibility_timeout_s: int = Field(
        7200,
        description="Redis: an unacknowledged task is redelivered after this; keep it above the time limit.",
    )
    redelivery_sweep_s: int = Field(
        60,
        description="Redis: how often a worker looks for unacknowledged tasks past the visibility timeout.",
    )
    job_heartbeat_s: float = Field(
        10.0, gt=0, description="How often a running task marks its job alive in the jobs table."
    )
    job_lost_after_s: float = Field(
        30.0,
        gt=0,
        description="A running job without a heartbeat for this long is marked worker_lost by the "
        "other workers (it runs again once the visibility timeout redelivers it).",
    )
    max_upload_bytes: int = Field(2 * 1024**3, description="Largest blob accepted by the blob store.")
    scene_max_objects: int = Field(2_000, description="Scene documents with more objects are rejected.")
    scene_max_vertices: int = Field(2_000_000, description="Cap on vertices summed over a scene's meshes.")
    scene_max_faces: int = Field(2_000_000, description="Cap on faces summed over a scene's meshes.")
    scene_max_nodes: int = Field(20_000, description="Cap on shader/geometry nodes summed over a scene.")
    scene_max_keyframes: int = Field(1_000_000, description="Cap on keyframes summed over a scene.")
    geometry_checkpoint: Path = Field(
        Path("models/geometry/parts-nearest/model.pt"),
        description="Geometry model checkpoint served in-process or by Triton: flat or parts, told apart "
        "by the file (the default is the structure-first parts model on the training layouts nearest the "
        "prompt; models/geometry/parts-small/model.pt writes its layouts, models/geometry/tiny/model.pt is "
        "the flat one; see the geometry card).",
    )
    material_checkpoint: Path = Field(
        Path("models/material/tiny/model.pt"),
        description="Material model checkpoint; the specialist is available only where it exists.",
    )
    modifier_checkpoint: Path = Field(
        Path("models/modifier/tiny/model.pt"),
        description="Modifier model checkpoint; the specialist is available only where it exists.",
    )
    animation_checkpoint: Path = Field(
        Path("models/animation/tiny/model.pt"),
        description="Animation model checkpoint; the specialist is available only where it exists.",
    )
    inference_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Deadline of one model call (queued time included); then the generation fails.",
    )
    generation_max_prompt_chars: int = Field(500, description="Longer prompts are refused (422).")
    generation_max_face_budget: int = Field(800, description="Largest face budget a request may ask for.")
    generation_max_variations: int = Field(4, description="Most variations one request may ask for.")
    generation_concurrency: int = Field(
        4, ge=1, description="Generations one gateway replica runs at once (Triton decodes them together)."
    )
    generation_max_queued: int = Field(
        64, ge=1, description="Generations one replica holds (running and waiting); more are refused (429)."
    )
    generation_lease_s: float = Field(
        30.0,
        gt=0,
        description="A queued or running generation its replica has not touched for this long is failed "
        "(the replica died); replicas touch theirs every third of it.",
    )
    gateway_max_body_bytes: int = Field(
        4 * 1024**2, description="Larger request bodies are refused (413), chunked ones included."
    )
    gateway_rate_per_minute: int = Field(
        0, ge=0, description="New generations per minute per API key (or client address); 0: no limit."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="Service logs: one JSON object per line (with the request id), or plain text."
    )
    gateway_host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    gateway_port: int = Field(8000, description="Port the gateway listens on.")
    api_key: str = Field("", description="When set, the gateway requires it in the X-API-Key header.")
    log_level: str = Field("INFO", description="Python logging level for every service.")

    # ---- labeller: quality filter, deduplication and dataset builder (services/labeler) ----
    # An object failing any quality threshold is kept in the database with its reason but left
    # out of every geometry, modifier and material dataset.
    quality_min_faces: int = Field(
        4, description="Quality: meshes with fewer faces are rejected (too_few_faces)."
    )
    quality_max_faces: int = Field(
        20_000, description="Quality: meshes with more faces are rejected (too_many_faces)."
    )
    quality_max_zero_area_share: float = Field(
        0.10, description="Quality: largest share of faces with (near) zero area (zero_area_faces)."
    )
    quality_zero_area_epsilon: float = Field(
        1e-10, description="Quality: a face whose area / bbox diagonal^2 is below this counts as zero-area."
    )
    quality_max_non_manifold_share: float = Field(
        0.10, description="Quality: largest share of edges used by more than two faces (non_manifold)."
    )
    quality_max_loose_share: float = Field(
        0.20,
        description="Quality: largest share of vertices in no face, or of edges in no face (loose_geometry).",
    )
    quality_min_size: float = Field(
        1e-3, description="Quality: smallest bounding-box diagonal in Blender units (scale_outlier)."
    )
    quality_max_size: float = Field(
        1e4, description="Quality: largest bounding-box diagonal in Blender units (scale_outlier)."
    )
    label_low_poly_faces: int = Field(
        1_000, description="Labels: meshes with at most this many faces are captioned low-poly."
    )
    dedup_quantization_bits: int = Field(
        10, description="Exact dedup: bits per coordinate after normalising to the unit box."
    )
    dedup_near_threshold: float = Field(
        0.04, description="Near dedup: shape-descriptor distance below which two meshes are one cluster."
    )
    dataset_split_fractions: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="Dataset: target train/val/test shares (by items, whole packs)."
    )
    dataset_shard_items: int = Field(256, description="Dataset: items per tar shard.")

    # --- Scraper (services/scraper): politeness, sources, caps, licenses ---
    scraper_user_agent: str = Field(
        "BlenderModelTraining-scraper/0.1 (+{contact})",
        description="User-Agent sent by every scraper request; {contact} is replaced by scraper_contact_url.",
    )
    scraper_contact_url: str = Field(
        "https://github.com/blender-model-training/blender-model-training",
        description="Where site operators can reach the people running the scraper (named in the User-Agent).",
    )
    scraper_crawl_web: bool = Field(
        False,
        description="Let `scrape all` (make scrape-all) crawl the public web sources; off: only local "
        "runs there (a source named on the command line always runs).",
    )
    scraper_rate_per_host: float = Field(1.0, description="Most requests per second sent to one host.")
    scraper_concurrency_per_host: int = Field(2, description="Most requests in flight to one host at once.")
    scraper_max_retries: int = Field(
        4, description="Retries on 429/5xx/connection errors, with exponential backoff."
    )
    scraper_backoff_base_s: float = Field(1.0, description="First retry delay; doubles each retry.")
    scraper_max_retry_after_s: float = Field(
        300.0, description="Longest Retry-After the scraper waits for; longer ones fail the request."
    )
    scraper_timeout_s: float = Field(120.0, description="Total time limit of one HTTP request.")
    scraper_max_file_bytes: int = Field(
        512 * 1024**2, description="Downloads and archive members larger than this are rejected."
    )
    scraper_archive_max_total_bytes: int = Field(
        2 * 1024**3, description="Cap on the total uncompressed size of one archive's members."
    )
    scraper_archive_max_files: int = Field(10_000, description="Cap on the number of members in one archive.")
    scraper_archive_max_ratio: float = Field(
        200.0,
        description="Archives whose uncompressed/compressed size ratio exceeds this are rejected as bombs.",
    )
    scraper_license_allowlist: list[str] = Field(
        ["CC0-1.0", "CC-BY-4.0", "CC-BY-3.0", "MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause"],
        description="SPDX identifiers accepted; anything else (NC, ND, unknown) is rejected with the reason.",
    )
    scraper_github_api_url: str = Field("https://api.github.com", description="GitHub REST API base URL.")
    scraper_github_raw_url: str = Field(
        "https://raw.githubusercontent.com", description="Base URL of raw files at a commit."
    )
    scraper_github_media_url: str = Field(
        "https://media.githubusercontent.com/media",
        description="Base URL of git-lfs files at a commit (used when a raw URL answers with an LFS pointer).",
    )
    scraper_github_token: str = Field(
        "", description="GitHub token (search needs one); empty: source skipped."
    )
    scraper_blendswap_url: str = Field("https://www.blendswap.com", description="BlendSwap site base URL.")
    scraper_blenderartists_url: str = Field(
        "https://blenderartists.org", description="Blender Artists (Discourse) base URL."
    )
    scraper_sketchfab_api_url: str = Field(
        "https://api.sketchfab.com", description="Sketchfab Data API base URL."
    )
    scraper_sketchfab_token: str = Field(
        "", description="Sketchfab API token (Authorization: Token ...); empty: source skipped."
    )
    scraper_demofiles_url: str = Field(
        "https://www.blender.org/download/demo-files/", description="Blender's official demo files page."
    )
    scraper_youtube_api_url: str = Field(
        "https://www.googleapis.com/youtube/v3", description="YouTube Data API v3 base URL."
    )
    scraper_youtube_transcript_url: str = Field(
        "https://video.google.com/timedtext",
        description="Timedtext-style transcript endpoint (?v=ID&lang=L).",
    )
    scraper_youtube_api_key: str = Field("", description="YouTube Data API key; empty: source skipped.")

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'metadata.sqlite3'}"
        if not self.blob_url:
            self.blob_url = f"file://{self.data_dir / 'blobs'}"
        if not self.result_url and self.queue_url.startswith(("redis://", "rediss://")):
            self.result_url = self.queue_url
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError("task_soft_time_limit_s must be below task_time_limit_s")
        if self.visibility_timeout_s <= self.task_time_limit_s:
            raise ValueError(
                f"visibility_timeout_s ({self.visibility_timeout_s}) must be above task_time_limit_s "
                f"({self.task_time_limit_s}): Redis hands an unacknowledged task to another worker "
                "after the visibility timeout, so a task still running then would run twice at once"
            )
        if self.job_lost_after_s <= self.job_heartbeat_s:
            raise ValueError(
                f"job_lost_after_s ({self.job_lost_after_s}) must be above job_heartbeat_s "
                f"({self.job_heartbeat_s}), or live jobs are marked worker_lost between heartbeats"
            )
        return self

    @property
    def embedded_queue(self) -> bool:
        return self.queue_url.startswith("memory://")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
