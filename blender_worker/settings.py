"""Extraction limits and pool sizing, read from ``BMT_EXTRACT_*`` environment variables.

Kept apart from shared.settings because only the Blender worker reads them.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ExtractSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BMT_EXTRACT_", env_file=".env", extra="ignore")

    workers: int = Field(2, ge=1, description="Child processes extracting in parallel.")
    timeout_s: float = Field(
        120.0, gt=0, description="Wall-clock limit per file; the child is killed past it."
    )
    memory_mb: int = Field(
        4096,
        ge=512,
        description="Address-space limit (RLIMIT_AS) per child. bpy alone reserves about 1.25 GB of "
        "virtual memory; opening every corpus file in one process peaked at 1.4 GB.",
    )
    max_file_bytes: int = Field(512 * 1024**2, description="Larger input files are rejected unread.")
    max_decompressed_bytes: int = Field(
        1024**3, description="zstd/gzip .blend files that inflate past this are rejected (bomb guard)."
    )
    max_vertices: int = Field(
        2_000_000, description="Files whose meshes hold more vertices in all are rejected."
    )
    max_faces: int = Field(2_000_000, description="Files whose meshes hold more faces in all are rejected.")
    files_per_child: int = Field(200, ge=1, description="A child is replaced after this many files.")
    recycle_rss_mb: int = Field(1500, description="A child is replaced once its resident memory passes this.")
    preview_size: int = Field(128, ge=16, description="Preview render width and height in pixels.")
    preview_samples: int = Field(8, ge=1, description="Cycles samples per preview pixel.")
    assimp_path: str = Field("assimp", description="Assimp command line, used to convert ASCII FBX files.")
    legacy_blender_path: str = Field(
        "blender",
        description="An older Blender (Debian's 3.4) used to resave files bpy 5.0 refuses (big-endian).",
    )


@lru_cache(maxsize=1)
def get_extract_settings() -> ExtractSettings:
    return ExtractSettings()
