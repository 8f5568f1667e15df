"""Measures part decomposition rules on a geometry dataset split (models/geometry README, "Parts").

    python -m benchmarks.decomposition --dataset /work/datasets/geometry [--split train] [--limit N]
        [--target-parts 16 --min-part-faces 4] [--render chair,table,tree,sword --out PNG]

Per rule: parts per object (median, mean, 90th percentile), the largest part's share of the
object's faces (median), the share of objects that fit (at most max_parts parts, each within the
part token budget), the share of objects that are one connected piece, and seconds per object.
With --render, draws the first object whose caption holds each word, its parts coloured.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from services.trainer.geometry import load_items
from shared.ml.part_decomposition import DecompositionConfig, decompose, unit_frame


def measure(items: list[dict], config: DecompositionConfig) -> dict:
    parts, largest, fits, single, components = [], [], [], [], []
    started = time.perf_counter()
    for item in items:
        d = decompose(item["mesh"]["vertices"], item["mesh"]["faces"], config)
        sizes = np.array([len(p.faces) for p in d.parts])
        parts.append(len(d.parts))
        largest.append(sizes.max() / sizes.sum())
        fits.append(d.fits)
        single.append(d.stats["components"] == 1)
        components.append(d.stats["components"])
    return {
        "rule": {
            "target_parts": config.target_parts,
            "min_part_faces": config.min_part_faces,
            "concave_degrees": config.concave_degrees,
        },
        "objects": len(items),
        "parts_median": float(np.median(parts)),
        "parts_mean": float(np.mean(parts)),
        "parts_p90": float(np.percentile(parts, 90)),
        "largest_part_share_median": float(np.median(largest)),
        "fits_share": float(np.mean(fits)),
        "one_component_share": float(np.mean(single)),
        "components_median": float(np.median(components)),
        "seconds_per_object": (time.perf_counter() - started) / max(1, len(items)),
    }


def render(items: list[dict], words: list[str], config: DecompositionConfig, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    chosen = []
    for word in words:
        for item in items:
            if any(word in c.split() for c in item["captions"]) and item not in chosen:
                chosen.append(item)
                break
    columns = min(4, len(chosen))
    rows = -(-len(chosen) // columns)
    fig = plt.figure(figsize=(3.2 * columns, 3.4 * rows))
    colours = plt.get_cmap("tab20")
    for k, item in enumerate(chosen):
        v = unit_frame(np.asarray(item["mesh"]["vertices"], dtype=np.float64))
        faces = item["mesh"]["faces"]
        d = decompose(v, faces, config)
        ax = fig.add_subplot(rows, columns, k + 1, projection="3d")
        for i, part in enumerate(d.parts):
            polys = [v[list(faces[f])] for f in part.faces]
            ax.add_collection3d(
                Poly3DCollection(polys, facecolor=colours(i % 20), edgecolor="#333333", linewidths=0.15)
            )
        for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
            setter(-0.5, 0.5)
        ax.view_init(elev=20, azim=-60)
        ax.set_axis_off()
        ax.set_title(f'"{item["captions"][0][:28]}"\n{len(d.parts)} parts', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decomposition")
    parser.add_argument("--dataset", help="geometry dataset; default: synthetic primitives")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--target-parts", type=int, nargs="+", default=[DecompositionConfig.target_parts])
    parser.add_argument("--min-part-faces", type=int, default=DecompositionConfig.min_part_faces)
    parser.add_argument("--concave-degrees", type=float, default=DecompositionConfig.concave_degrees)
    parser.add_argument("--render", help="comma-separated caption words to draw, e.g. chair,table,tree,sword")
    parser.add_argument("--out", default="var/decomposition.png")
    parser.add_argument("--render-only", action="store_true", help="draw without measuring the split")
    args = parser.parse_args(argv)
    items = load_items(args.dataset, args.split)[: args.limit]
    for target in args.target_parts:
        config = DecompositionConfig(
            target_parts=target, min_part_faces=args.min_part_faces, concave_degrees=args.concave_degrees
        )
        if not args.render_only:
            print(json.dumps(measure(items, config)))
        if args.render:
            out = args.out if len(args.target_parts) == 1 else args.out.replace(".png", f"-{target}.png")
            render(items, args.render.split(","), config, out)


if __name__ == "__main__":
    main()
