"""Peak memory of one extraction against the size of its mesh: what the memory limit must allow.

    python -m benchmarks.extract_memory [--sides 250 500 1000] [--memory-mb 16384]

Builds one grid mesh per side (side x side faces) with bpy (tests/blend_fixtures.py), extracts
each in a fresh child under a generous limit, and prints peak address space (what RLIMIT_AS, the
BMT_EXTRACT_MEMORY_MB limit, counts) and peak resident memory per file, with a least-squares line
through them: the child's base and its megabytes per million faces, and what a file at the face
cap (BMT_EXTRACT_MAX_FACES) needs. The baseline row is the smallest grid (bpy's own footprint).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from blender_worker.pool import run_batch
from blender_worker.settings import get_extract_settings

REPO = Path(__file__).resolve().parents[1]


def measure(sides: list[int], memory_mb: int) -> list[dict]:
    settings = get_extract_settings().model_copy(
        update={"workers": 1, "files_per_child": 1, "memory_mb": memory_mb, "timeout_s": 1800}
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bmt-extract-memory-") as tmp:
        for side in sides:
            path = Path(tmp) / f"grid-{side}.blend"
            subprocess.run(
                [sys.executable, "-m", "tests.blend_fixtures", "--grid", str(path), str(side)],
                cwd=REPO,
                check=True,
                capture_output=True,
            )
            request = {"path": str(path), "mode": "extract", "out_json": str(Path(tmp) / f"{side}.json")}
            (result,) = run_batch([request], settings)
            if result["status"] != "ok":
                raise RuntimeError(f"grid {side}: {result['status']}: {result['reason']}")
            rows.append(
                {
                    "faces": result["counts"]["faces"],
                    "address_space_mb": result["peak_address_space_mb"],
                    "rss_mb": result["peak_rss_mb"],
                    "document_mb": Path(result["document"]).stat().st_size / 1024**2,
                    "seconds": result["timings"]["total_s"],
                }
            )
            path.unlink()
            Path(result["document"]).unlink()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.extract_memory", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sides", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--memory-mb", type=int, default=16384, help="the children's limit while measuring")
    args = parser.parse_args(argv)
    rows = measure(args.sides, args.memory_mb)
    print(f"{'faces':>10} {'address space MB':>17} {'resident MB':>12} {'document MB':>12} {'seconds':>8}")
    for row in rows:
        print(
            f"{row['faces']:>10,} {row['address_space_mb']:>17.0f} {row['rss_mb']:>12.0f} "
            f"{row['document_mb']:>12.1f} {row['seconds']:>8.1f}"
        )
    faces = np.array([r["faces"] for r in rows]) / 1e6
    cap = get_extract_settings().max_faces / 1e6
    for key, what in (("address_space_mb", "address space"), ("rss_mb", "resident")):
        per_million, base = np.polyfit(faces, [r[key] for r in rows], 1)
        print(
            f"{what}: {base:.0f} MB + {per_million:.0f} MB per million faces; "
            f"at the cap of {cap:g} M faces: {base + per_million * cap:.0f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
