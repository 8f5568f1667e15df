"""Extraction limits and pool sizing, read from ``BMT_EXTRACT_*`` environment variables.

Kept apart from shared.settings because only the Blender worker reads them.
"""

from __future__ import annotations

import math
from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Peak address space of one extraction, measured by benchmarks/extract_memory.py (grid meshes with
# a UV map, bpy 5.0, 2 CPUs): 1,239 MB + 2,809 MB per million faces (resident: 335 + 2,645), most
# of it the parsed document while it is validated. Rounded up for meshes that carry more per face.
BASE_MEMORY_MB = 1400
MEMORY_MB_PER_MILLION_FACES = 3000


def memory_needed_mb(faces: int) -> int:
    """The address-space limit a child needs to extract a file of ``faces`` faces."""
    return math.ceil(BASE_MEMORY_MB + MEMORY_MB_PER_MILLION_FACES * faces / 1e6)


class ExtractSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BMT_EXTRACT_", env_file=".env", extra="ignore")

    workers: int = Field(2, ge=1, description="Child processes extracting in parallel.")
    timeout_s: float = Field(
        120.0, gt=0, description="Wall-clock limit per file; the child is killed past it."
    )
    memory_mb: int = Field(
        7680,
        ge=512,
        description="Address-space limit (RLIMIT_AS) per child; at least what a file at the face cap "
        "needs (1,400 MB + 3,000 MB per million faces, measured by benchmarks/extract_memory.py). A "
        "worker machine needs up to workers x this much.",
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

    @model_validator(mode="after")
    def _memory_covers_the_face_cap(self) -> ExtractSettings:
        needed = memory_needed_mb(self.max_faces)
        if self.memory_mb < needed:
            raise ValueError(
                f"memory_mb ({self.memory_mb}) is below the {needed} MB that a file at the face cap "
                f"(max_faces {self.max_faces}) needs to extract: raise BMT_EXTRACT_MEMORY_MB or lower "
                "BMT_EXTRACT_MAX_FACES"
            )
        return self


@lru_cache(maxsize=1)
def get_extract_settings() -> ExtractSettings:
    return ExtractSettings()
