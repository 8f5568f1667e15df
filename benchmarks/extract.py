"""Extraction over the whole corpus with N workers, against a baseline that only opens each file.

    python -m benchmarks.extract [--workers N] [--corpus DIR] [--formats blend,glb,fbx]

Per format: files/s and objects/s for the extraction and for the floor (check + open or import,
nothing read), peak resident memory per worker, outcomes and failures by reason, and coverage: of
the files that hold node materials, modifiers, keyframes or drivers (counted straight from bpy.data
before reading), the share whose document captured all of them.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from statistics import median
from typing import Any

from tqdm import tqdm

from blender_worker.extract import build_requests, collect_inputs
from blender_worker.pool import run_batch
from blender_worker.settings import get_extract_settings

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("BMT_CORPUS_DIR") or REPO / ".." / "shared" / "corpus")
COVERAGE = ("node_materials", "modifiers", "keyframes", "drivers")


def timed_batch(
    requests: list[dict[str, Any]], workers: int, label: str
) -> tuple[list[dict[str, Any]], float]:
    settings = get_extract_settings().model_copy(update={"workers": workers})
    with tqdm(total=len(requests), unit="file", desc=label, leave=False) as bar:
        started = time.perf_counter()
        results = run_batch(requests, settings, on_result=lambda _: bar.update(1))
        return results, time.perf_counter() - started


def reason_kind(reason: str) -> str:
    """A reason without its file paths and numbers, so that equal causes count together."""
    text = re.sub(r"'[^']*/[^']*'|\"[^\"]*/[^\"]*\"", "<path>", reason)
    return re.sub(r"\d+", "N", text)[:110]


def coverage(results: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """For each kind: (files whose document captured everything the file holds, files holding some)."""
    out = {}
    for kind in COVERAGE:
        holding = [r for r in results if r.get("inventory", {}).get(kind)]
        captured = [r for r in holding if r.get("counts", {}).get(kind, 0) >= r["inventory"][kind]]
        out[kind] = (len(captured), len(holding))
    return out


def bench_format(fmt: str, files: list[tuple[Path, str]], workers: int, out: Path) -> None:
    floor_requests = build_requests(files, out, preview=False, mode="open")
    extract_requests = build_requests(files, out, preview=False)
    for request in extract_requests:
        request["with_inventory"] = True
    floor, floor_s = timed_batch(floor_requests, workers, f"{fmt} open")
    results, extract_s = timed_batch(extract_requests, workers, f"{fmt} extract")
    outcomes = Counter(r["status"] for r in results)
    objects = sum(r.get("counts", {}).get("objects", 0) for r in results)
    floor_ok = sum(r["status"] == "ok" for r in floor)
    peaks: dict[int, float] = defaultdict(float)
    for r in results:
        if "pid" in r:
            peaks[r["pid"]] = max(peaks[r["pid"]], r["peak_rss_mb"])
    n = len(files)
    print(f"\n## {fmt}: {n} files, {workers} workers")
    print("| run | wall s | files/s | objects/s | ok | rejected | failed |")
    print("|---|---|---|---|---|---|---|")
    print(f"| open only (floor) | {floor_s:.1f} | {n / floor_s:.1f} | - | {floor_ok} | {n - floor_ok} | - |")
    print(
        f"| extract | {extract_s:.1f} | {n / extract_s:.1f} | {objects / extract_s:.1f} | {outcomes['ok']} "
        f"| {outcomes['rejected']} | {outcomes['failed']} |"
    )
    if peaks:
        values = sorted(peaks.values())
        print(
            f"\npeak RSS per worker process: max {values[-1]:.0f} MB, median {median(values):.0f} MB "
            f"({len(values)} processes)"
        )
    stage_totals: Counter[str] = Counter()
    for r in results:
        stage_totals.update({k: v for k, v in r.get("timings", {}).items() if k != "total_s"})
    print("CPU seconds by stage: " + ", ".join(f"{k} {v:.1f}" for k, v in stage_totals.most_common()))
    reasons = Counter(f"{r['status']}: {reason_kind(r['reason'])}" for r in results if r["status"] != "ok")
    for reason, count in reasons.most_common():
        print(f"- {count} x {reason}")
    print("\n| coverage | captured fully | files holding it |")
    print("|---|---|---|")
    for kind, (captured, holding) in coverage(results).items():
        share = f"{100 * captured / holding:.1f}%" if holding else "-"
        print(f"| {kind} | {captured} ({share}) | {holding} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--formats", default="blend,glb,fbx", help="corpus folders to run, in order")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bmt-bench-extract-") as tmp:
        for fmt in args.formats.split(","):
            files = collect_inputs([args.corpus / fmt])
            bench_format(fmt, files, args.workers, Path(tmp))


if __name__ == "__main__":
    main()
