"""Reports a person reads: the quality filter's rejections (JSON + table) and a dataset's
statistics (JSON + PNG plots)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from services.labeler.dataset import BuildResult, ObjectRecord


def quality_report(records: list[ObjectRecord]) -> dict[str, Any]:
    """Every rejected object with its reason, and counts per reason code."""
    rejected = [
        {
            "asset_sha256": r.asset.sha256,
            "source_path": r.asset.source_path,
            "object": r.row.name,
            "type": r.row.type,
            "reason": r.row.rejection_reason,
            "codes": (r.row.quality_flags or {}).get("failed", []),
        }
        for r in records
        if r.row.rejection_reason
    ]
    codes = Counter(code for r in rejected for code in r["codes"])
    return {
        "objects": len(records),
        "accepted": len(records) - len(rejected),
        "rejected": len(rejected),
        "by_reason": dict(sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))),
        "rejections": rejected,
    }


def quality_table(report: dict[str, Any], examples: int = 2) -> str:
    lines = [
        f"quality filter: {report['accepted']} of {report['objects']} objects accepted, {report['rejected']} rejected",
        f"{'reason':<16} {'objects':>7}  example",
    ]
    for code, count in report["by_reason"].items():
        shown = [r for r in report["rejections"] if code in r["codes"]][:examples]
        example = "; ".join(
            f"{Path(r['source_path'] or '').name}:{r['object']} ({r['reason']})" for r in shown
        )
        lines.append(f"{code:<16} {count:>7}  {example[:110]}")
    return "\n".join(lines)


def write_dataset_report(result: BuildResult, out_dir: Path) -> list[Path]:
    """report.json, manifest.json and stats.png under ``out_dir``; returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    stats = result.manifest["stats"]
    report = {
        "name": result.name,
        "version": result.version,
        "specialist": result.specialist,
        "manifest_key": result.manifest_key,
        "splits": {s: v["items"] for s, v in result.manifest["splits"].items()},
        **{k: v for k, v in stats.items() if k != "faces"},
        "faces": {k: v for k, v in stats["faces"].items() if k != "values"},
    }
    paths = [out_dir / "report.json", out_dir / "manifest.json", out_dir / "stats.png"]
    paths[0].write_text(json.dumps(report, indent=1, sort_keys=True))
    paths[1].write_text(json.dumps(result.manifest, indent=1, sort_keys=True))

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    fig.suptitle(
        f"{result.name} / {result.specialist} v{result.version}: {stats['items']} items "
        f"(train {report['splits']['train']}, val {report['splits']['val']}, test {report['splits']['test']})"
    )
    faces = [f for f in stats["faces"]["values"] if f > 0]
    without = len(stats["faces"]["values"]) - len(faces)  # armatures, empties: nothing to bin on a log axis
    ax = axes[0][0]
    if faces:
        import numpy as np

        bins = np.logspace(0, np.log10(max(faces) + 1), 30)
        ax.hist(faces, bins=bins, color="#4477aa")
        ax.set_xscale("log")
    ax.set_title(
        "faces per object (log scale)" + (f", {without} items without faces not shown" if without else "")
    )
    ax.set_xlabel("faces")
    ax.set_ylabel("items")
    _barh(axes[0][1], stats["categories"], "categories", "#228833")
    _barh(axes[1][0], stats["licenses"], "licenses", "#ccbb44")
    # Cameras, lights and armatures are "not_mesh" by the dozen; left out so real reasons show.
    rejections = {k: v for k, v in stats["rejections"].items() if k != "not_mesh"}
    title = f"quality rejections ({stats['rejections'].get('not_mesh', 0)} non-mesh objects not shown)"
    _barh(axes[1][1], rejections, title, "#ee6677")
    fig.tight_layout()
    fig.savefig(paths[2], dpi=80)
    plt.close(fig)
    return paths


def _barh(ax: Any, counts: dict[str, int], title: str, colour: str) -> None:
    ordered = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
    ax.barh([k for k, _ in ordered], [v for _, v in ordered], color=colour)
    for y, (_, v) in enumerate(ordered):
        ax.text(v, y, f" {v}", va="center", fontsize=8)
    ax.set_title(title)
    if not ordered:
        ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
