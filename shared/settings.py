"""One settings object for every service, read from environment variables prefixed ``BMT_``.

The URLs pick the parts: the defaults run everything embedded in one process with no servers
(SQLite file, local blob folder, in-process tasks, in-process torch inference); production points
them at PostgreSQL, MinIO, Redis and Triton. The README's configuration table lists every field.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
    max_upload_bytes: int = Field(2 * 1024**3, description="Largest blob accepted by the blob store.")
    scene_max_objects: int = Field(2_000, description="Scene documents with more objects are rejected.")
    scene_max_vertices: int = Field(2_000_000, description="Cap on vertices summed over a scene's meshes.")
    scene_max_faces: int = Field(2_000_000, description="Cap on faces summed over a scene's meshes.")
    scene_max_nodes: int = Field(20_000, description="Cap on shader/geometry nodes summed over a scene.")
    scene_max_keyframes: int = Field(1_000_000, description="Cap on keyframes summed over a scene.")
    geometry_checkpoint: Path = Field(
        Path("models/geometry/tiny/model.pt"),
        description="Geometry model checkpoint served in-process or by Triton.",
    )
    generation_max_prompt_chars: int = Field(500, description="Longer prompts are refused (413).")
    generation_max_face_budget: int = Field(800, description="Largest face budget a request may ask for.")
    generation_max_variations: int = Field(4, description="Most variations one request may ask for.")
    gateway_host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    gateway_port: int = Field(8000, description="Port the gateway listens on.")
    api_key: str = Field("", description="When set, the gateway requires it in the X-API-Key header.")
    log_level: str = Field("INFO", description="Python logging level for every service.")

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
        return self

    @property
    def embedded_queue(self) -> bool:
        return self.queue_url.startswith("memory://")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
