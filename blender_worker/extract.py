"""Command line: extract .blend (and glTF/FBX/OBJ/STL/PLY/USD) files into scene-format documents.

    python -m blender_worker.extract PATH... --out DIR [--workers N] [--timeout S] [--memory-mb M] [--preview]

Writes one JSON document per input (plus a PNG preview with --preview) and DIR/summary.json with
each file's status (ok, rejected, failed), timings and exact reason. A file that crashes or
outlasts its child is recorded as failed and the batch goes on. Exit status: the number of files
that failed (0 when every file was handled, rejections included; at most 100).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from blender_worker.pool import run_batch
from blender_worker.precheck import IMPORT_FORMATS
from blender_worker.settings import ExtractSettings, get_extract_settings

SUFFIXES = frozenset({".blend", *IMPORT_FORMATS})
MAX_EXIT_STATUS = 100  # exit statuses stop at 255, and above 128 read as "killed by a signal"


def collect_inputs(paths: list[Path]) -> list[tuple[Path, str]]:
    """Each input file with a flat, unique output stem taken from its path below the given folder."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            found.extend((f, "__".join(f.relative_to(path).parts)) for f in files)
        else:
            found.append((path, path.name))
    stems: Counter[str] = Counter()
    unique = []
    for path, name in found:
        stems[name] += 1
        unique.append((path, name if stems[name] == 1 else f"{name}.{stems[name]}"))
    return unique


def build_requests(
    inputs: list[tuple[Path, str]], out: Path, *, preview: bool, mode: str = "extract"
) -> list[dict[str, Any]]:
    requests = []
    for path, name in inputs:
        request: dict[str, Any] = {"path": str(path), "mode": mode, "out_json": str(out / f"{name}.json")}
        if preview:
            request["preview_png"] = str(out / f"{name}.png")
        requests.append(request)
    # Largest first, so that no big file is left alone at the end of the batch.
    return sorted(requests, key=lambda r: -Path(r["path"]).stat().st_size if Path(r["path"]).exists() else 0)


def run(
    paths: list[Path], out: Path, settings: ExtractSettings, *, preview: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Extract every input under ``paths`` into ``out``; return (and write) the summary."""
    out.mkdir(parents=True, exist_ok=True)
    inputs = collect_inputs(paths)
    requests = build_requests(inputs, out, preview=preview)
    started = time.perf_counter()
    with tqdm(total=len(requests), unit="file", desc="extract", disable=not progress) as bar:

        def advance(result: dict[str, Any]) -> None:
            bar.update(1)
            bar.set_postfix_str(result["status"], refresh=False)

        results = run_batch(requests, settings, on_result=advance)
    elapsed = time.perf_counter() - started
    order = {str(path): i for i, (path, _) in enumerate(inputs)}
    results.sort(key=lambda r: order[r["path"]])
    summary = {
        "elapsed_s": round(elapsed, 3),
        "workers": settings.workers,
        "timeout_s": settings.timeout_s,
        "memory_mb": settings.memory_mb,
        "totals": dict(Counter(r["status"] for r in results)),
        "files": [_summary_entry(r) for r in results],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _summary_entry(result: dict[str, Any]) -> dict[str, Any]:
    keys = [
        "path",
        "status",
        "reason",
        "sha256",
        "document",
        "preview",
        "blender_version",
        "timings",
        "counts",
        "warnings",
        "peak_rss_mb",
        "peak_address_space_mb",
        "pid",
    ]
    return {k: result[k] for k in keys if k in result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m blender_worker.extract", description=__doc__.split("\n")[0]
    )
    parser.add_argument("paths", nargs="+", type=Path, help=".blend/.glb/.fbx/... files or folders")
    parser.add_argument("--out", type=Path, required=True, help="folder for documents and summary.json")
    parser.add_argument("--workers", type=int, help="child processes (default BMT_EXTRACT_WORKERS or 2)")
    parser.add_argument("--timeout", type=float, help="seconds per file before its child is killed")
    parser.add_argument("--memory-mb", type=int, help="address-space limit per child in MB")
    parser.add_argument("--preview", action="store_true", help="also render a small Cycles preview PNG")
    args = parser.parse_args(argv)
    overrides = {
        k: v
        for k, v in {"workers": args.workers, "timeout_s": args.timeout, "memory_mb": args.memory_mb}.items()
        if v is not None
    }
    settings = ExtractSettings.model_validate({**get_extract_settings().model_dump(), **overrides})
    summary = run(args.paths, args.out, settings, preview=args.preview)
    totals = summary["totals"]
    print(
        f"{sum(totals.values())} files in {summary['elapsed_s']:.1f} s: "
        + ", ".join(f"{n} {status}" for status, n in sorted(totals.items()))
        + f"; summary in {args.out / 'summary.json'}"
    )
    failed = [entry for entry in summary["files"] if entry["status"] == "failed"]
    for entry in failed:
        print(f"failed: {entry['path']}: {entry['reason']}", file=sys.stderr)
    return min(len(failed), MAX_EXIT_STATUS)


if __name__ == "__main__":
    sys.exit(main())
