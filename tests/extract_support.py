"""Shared helpers for the extraction tests: the corpus location and one-call batch extraction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from blender_worker.extract import run
from blender_worker.settings import ExtractSettings

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("BMT_CORPUS_DIR") or REPO / ".." / "shared" / "corpus")


def extract(
    paths: list[Path], out: Path, *, preview: bool = False, **settings: Any
) -> dict[str, dict[str, Any]]:
    """Run a batch; return summary entries keyed by input file name."""
    summary = run(paths, out, ExtractSettings(**settings), preview=preview, progress=False)
    return {Path(entry["path"]).name: entry for entry in summary["files"]}


def load_document(entry: dict[str, Any]) -> dict[str, Any]:
    return json.loads(Path(entry["document"]).read_text())


def build_blend_fixtures(out: Path, markers: Path) -> None:
    """Hostile and synthetic .blend files, built by bpy in a subprocess (see tests/blend_fixtures.py)."""
    subprocess.run(
        [sys.executable, "-m", "tests.blend_fixtures", str(out), str(markers)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )


def open_trusted(path: Path) -> None:
    """Open a file with auto-execution on, as a trusting user would (the control case)."""
    subprocess.run(
        [sys.executable, "-m", "tests.blend_fixtures", "--trusted", str(path)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
