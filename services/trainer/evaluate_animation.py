"""Evaluation of an animation checkpoint on held-out packs, against retrieval and a rest pose.

    python -m services.trainer.evaluate_animation [--dataset full] [--checkpoint models/animation/tiny/model.pt]

Every action of the test split that moves its target is a prompt ("wolf walking animation") on
that target (its rig, or the object). Three answers are scored in the same run:
- the model's action (one sample, seed 0);
- retrieval: the training action whose prompt embedding is nearest, retargeted by bone name
  (exact, else the same name words) onto the target; unmatched bones stay at rest;
- rest: no motion at all.
Metrics: validity (every F-curve targets a channel of the target), channel error (mean absolute
difference per channel over normalised time, against the target's own actions with the same
motion label, the nearest of them; cycles at their best phase), loop closure of cyclic motions
(share of the largest channel range), foot slide on walk and run where the rig has feet, motion
ratio (how much an answer moves against its references: 1 as much, 0 still; channel error alone
rewards stillness, the rest pose scoring well). Each is also given on the items whose rig (bone
names and hierarchy) no training item has.
EVAL_LIMIT=N scores only the first N prompts. Writes metrics.json and strips.png (a row of
posed frames per answer: model, retrieval, reference) to --out (var/eval/animation).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from services.trainer.animation import action_prompts, drives, item_layout, load_items  # noqa: E402
from services.trainer.animation_metrics import (  # noqa: E402
    channel_error,
    foot_bones,
    foot_slide,
    invalid_curves,
    loop_closure,
    motion_ratio,
    normalised_samples,
    pose_points,
)
from shared.ml.animation_generator import AnimationGenerator  # noqa: E402
from shared.ml.animation_tokens import (  # noqa: E402
    CYCLIC_MOTIONS,
    PROPS,
    MotionLayout,
    action_range,
    bone_path,
    evaluate_fcurve,
    motion_label,
    name_words,
)
from shared.ml.text_embedding import default_cache_dir, embed  # noqa: E402

METHODS = ("model", "retrieval", "rest")
STRIP_FRAMES = 6


def rig_signature(armature: dict | None) -> tuple:
    return tuple((b["name"], b.get("parent")) for b in (armature or {}).get("bones", []))


def retarget(action: dict[str, Any], source: MotionLayout, target: MotionLayout) -> dict[str, Any]:
    """The action's curves moved onto the target's bones of the same name (else the same name up
    to case, else the one bone with the same name words), locations scaled by the rigs' heights; curves on bones the target lacks are dropped.
    Between objects the action is kept as is."""
    if not target.is_rig or not source.is_rig:
        return action if not target.is_rig and not source.is_rig else {**action, "fcurves": []}
    by_case = {n.casefold(): n for n in target.names}
    words: dict[tuple, list[str]] = {}
    for n in target.names:
        words.setdefault(tuple(name_words(n)), []).append(n)
    mapping = {}
    for name in source.names:
        same_words = words.get(tuple(name_words(name)), [])
        if name in target.names or name.casefold() in by_case:
            mapping[name] = by_case[name.casefold()] if name not in target.names else name
        elif len(same_words) == 1:  # "LeftArm" onto "left_arm", never one of many "Bone.00N"
            mapping[name] = same_words[0]
    ratio = target.height / source.height
    fcurves = []
    for fcurve in action.get("fcurves", []):
        for name, new in mapping.items():
            prop = next((p for p in PROPS if fcurve["data_path"] == bone_path(name, p)), None)
            if prop is None:
                continue
            factor = ratio if prop == "location" else 1.0
            keys = [
                {
                    **k,
                    "co": [k["co"][0], k["co"][1] * factor],
                    "handle_left": k.get("handle_left")
                    and [k["handle_left"][0], k["handle_left"][1] * factor],
                    "handle_right": k.get("handle_right")
                    and [k["handle_right"][0], k["handle_right"][1] * factor],
                }
                for k in fcurve["keyframes"]
            ]
            fcurves.append({**fcurve, "data_path": bone_path(new, prop), "group": new, "keyframes": keys})
            break
    return {**action, "fcurves": fcurves}


def _cases(items: list[dict]) -> list[dict]:
    out = []
    for item in items:
        layout = item_layout(item)
        if layout is None:
            continue
        usable = [a for a in item.get("actions", []) if drives(a, layout)]
        for action in usable:
            label = motion_label(action["name"])
            references = [a for a in usable if label is not None and motion_label(a["name"]) == label] or [
                action
            ]
            out.append(
                {"item": item, "layout": layout, "action": action, "label": label, "references": references}
            )
    return out


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def evaluate_animation(
    checkpoint: str,
    dataset: str = "full",
    out: str = "var/eval/animation",
    limit: int | None = None,
    seed: int = 0,
    split: str = "test",
    temperature: float = 0.8,
) -> dict:
    """``split`` val: choose sampling settings there (``temperature``), then report on test."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', not {split!r}")
    started = time.perf_counter()
    train_items, test_items = load_items(dataset, "train"), load_items(dataset, split)
    seen_rigs = {rig_signature(i.get("armature")) for i in train_items if i.get("armature")}
    library = []  # (prompt, layout, action) of every training action: retrieval's candidates
    for item in train_items:
        layout = item_layout(item)
        if layout is not None:
            library += [
                (action_prompts(item, a)[0], layout, a) for a in item.get("actions", []) if drives(a, layout)
            ]
    cache = default_cache_dir()
    library_vectors = embed([p for p, _, _ in library], cache)
    cases = _cases(test_items)[:limit] if limit else _cases(test_items)
    generator = AnimationGenerator(checkpoint)
    rows = []
    model_seconds = 0.0
    for case in cases:
        item, layout = case["item"], case["layout"]
        prompt = action_prompts(item, case["action"])[0]
        request = {
            "prompt": prompt,
            "object_type": "ARMATURE" if layout.is_rig else "MESH",
            "seed": seed,
            "temperature": temperature,
        }
        if layout.is_rig:
            request["armature"] = item["armature"]
        result = generator.run_many([request])[0]
        model_seconds += result["seconds"]
        vector = embed([prompt], cache)[0]
        order = np.argsort(-(library_vectors @ vector))
        source = next((library[i] for i in order if library[i][1].is_rig == layout.is_rig), None)
        retrieved = retarget(source[2], source[1], layout) if source else {"name": "none", "fcurves": []}
        answers = {"model": result["action"], "retrieval": retrieved, "rest": {"name": "rest", "fcurves": []}}
        cyclic = case["label"] in CYCLIC_MOTIONS
        references = [normalised_samples(r, layout) for r in case["references"]]
        row: dict[str, Any] = {
            "prompt": prompt,
            "item": item["id"],
            "label": case["label"],
            "unseen_rig": layout.is_rig and rig_signature(item["armature"]) not in seen_rigs,
            "retrieved": source[0] if source else None,
        }
        for method, action in answers.items():
            values = normalised_samples(action, layout) if action["fcurves"] else np.zeros_like(references[0])
            row[f"{method}_valid"] = not invalid_curves(action, layout)
            row[f"{method}_channel_error"] = min(channel_error(values, r, cyclic) for r in references)
            row[f"{method}_motion_ratio"] = motion_ratio(values, references)
            row[f"{method}_loop_closure"] = (
                loop_closure(action, layout) if cyclic and action["fcurves"] else None
            )
            walks = case["label"] in ("walk", "run") and foot_bones(layout) and action["fcurves"]
            row[f"{method}_foot_slide"] = foot_slide(layout, action) if walks else None
        row["reference_foot_slide"] = (
            foot_slide(layout, case["action"])
            if case["label"] in ("walk", "run") and foot_bones(layout)
            else None
        )
        row["_answers"], row["_layout"] = {**answers, "reference": case["action"]}, layout
        rows.append(row)

    def summary(selected: list[dict]) -> dict:
        out_: dict[str, Any] = {"items": len(selected)}
        for method in METHODS:
            prefix = "" if method == "model" else f"{method}_"
            out_[f"{prefix}valid_share"] = _mean([float(r[f"{method}_valid"]) for r in selected])
            out_[f"{prefix}channel_error"] = _mean([r[f"{method}_channel_error"] for r in selected])
            out_[f"{prefix}motion_ratio"] = _mean([r[f"{method}_motion_ratio"] for r in selected])
            out_[f"{prefix}loop_closure"] = _mean([r[f"{method}_loop_closure"] for r in selected])
            out_[f"{prefix}foot_slide"] = _mean([r[f"{method}_foot_slide"] for r in selected])
        closures = [r["model_loop_closure"] for r in selected if r["model_loop_closure"] is not None]
        out_["cyclic_closed_within_2pct_share"] = _mean([float(c <= 0.02) for c in closures])
        out_["reference_foot_slide"] = _mean([r["reference_foot_slide"] for r in selected])
        return out_

    metrics = summary(rows)
    metrics["unseen_rigs"] = summary([r for r in rows if r["unseen_rig"]])
    metrics["by_label"] = {
        label: summary([r for r in rows if str(r["label"]) == label])
        for label in sorted({str(r["label"]) for r in rows})
    }
    metrics.update(
        checkpoint=checkpoint,
        dataset=str(dataset),
        split=split,
        temperature=temperature,
        model_seconds_per_action=model_seconds / max(1, len(rows)),
        minutes=(time.perf_counter() - started) / 60,
        train_step=generator.meta.get("step"),
        samples=[{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
    )
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    render_strips(strip_rows(rows), folder / "strips.png")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    return metrics


def _object_box(action: dict[str, Any], frames: np.ndarray) -> np.ndarray:
    """(frames, 5, 3) the outline of a unit square (its X-Z face) moved by an object's transforms."""
    from scipy.spatial.transform import Rotation

    curves = {(f["data_path"], f["index"]): f for f in action.get("fcurves", [])}

    def channel(path: str, i: int, rest: float) -> np.ndarray:
        found = curves.get((path, i))
        return evaluate_fcurve(found, frames) if found else np.full(len(frames), rest)

    location = np.stack([channel("location", i, 0.0) for i in range(3)], 1)
    euler = np.stack([channel("rotation_euler", i, 0.0) for i in range(3)], 1)
    scale = np.stack([channel("scale", i, 1.0) for i in range(3)], 1)
    square = np.array([[-0.5, 0, -0.5], [0.5, 0, -0.5], [0.5, 0, 0.5], [-0.5, 0, 0.5], [-0.5, 0, -0.5]])
    square[:, 1] = square[:, 0] * 0.3  # a slanted square, so a turn about Z shows
    rotation = Rotation.from_euler("xyz", euler).as_matrix()
    return np.einsum("fij,fpj->fpi", rotation, square[None] * scale[:, None, :]) + location[:, None, :]


def strip_rows(rows: list[dict], count: int = 8) -> list[dict]:
    """The rows a strip shows: the first of each motion label, then the next ones, up to count."""
    firsts = list({str(r["label"]): r for r in reversed(rows)}.values())[::-1]
    return (firsts + [r for r in rows if r not in firsts])[:count]


def render_strips(rows: list[dict], path: Path) -> None:
    """Per row (a prompt): model, retrieval and reference, each STRIP_FRAMES frames across its
    action, the posed skeleton seen from the side (a rig; bone heads red) or the outline of a
    square moved by the object's transforms, all three in one frame of view."""
    if not rows:
        return
    shown = ("model", "retrieval", "reference")
    fig, axes = plt.subplots(
        len(rows) * len(shown),
        STRIP_FRAMES,
        figsize=(STRIP_FRAMES * 1.9, len(rows) * len(shown) * 1.9),
        squeeze=False,
    )
    for r, row in enumerate(rows):
        layout = row["_layout"]
        drawn = {}
        for method in shown:
            action = row["_answers"][method]
            start, end = action_range(action) if action["fcurves"] else (0.0, 1.0)
            frames = np.linspace(start, end, STRIP_FRAMES)
            if layout.is_rig:
                drawn[method] = pose_points(layout, action, frames)
            else:
                drawn[method] = _object_box(action, frames)
        every = np.concatenate([d.reshape(-1, 3) for d in drawn.values()])
        extent = np.ptp(every, axis=0)
        u = 1 if extent[1] >= extent[0] else 0  # look along the rig's narrower horizontal axis
        lo, hi = every[:, [u, 2]].min(0), every[:, [u, 2]].max(0)
        pad = 0.08 * max(float((hi - lo).max()), 1e-3)
        for m, method in enumerate(shown):
            flat = drawn[method][..., [u, 2]]
            for f in range(STRIP_FRAMES):
                ax = axes[r * len(shown) + m, f]
                if layout.is_rig:
                    for bone in flat[f]:
                        ax.plot(bone[:, 0], bone[:, 1], "-", color="C0", lw=1.4)
                    ax.plot(flat[f][:, 0, 0], flat[f][:, 0, 1], ".", color="C3", ms=3)
                else:
                    ax.plot(flat[f][:, 0], flat[f][:, 1], "-", color="C2", lw=1.8)
                ax.set_xlim(lo[0] - pad, hi[0] + pad)
                ax.set_ylim(lo[1] - pad, hi[1] + pad)
                ax.set_aspect("equal")
                ax.set_xticks([])
                ax.set_yticks([])
                if f == 0:
                    ax.set_ylabel(method, fontsize=8)
                if m == 0 and f == 0:
                    ax.set_title(f"{row['prompt'][:46]} [{row['label']}]", fontsize=8, loc="left")
                elif m == 0 and f == STRIP_FRAMES - 1:
                    ax.set_title("end", fontsize=7)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.trainer.evaluate_animation")
    parser.add_argument(
        "--dataset", default="full", help="animation dataset: name, manifest sha256, file or folder"
    )
    parser.add_argument("--checkpoint", default="models/animation/tiny/model.pt")
    parser.add_argument("--out", default="var/eval/animation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--split", default="test", choices=["val", "test"], help="val: choose sampling settings there"
    )
    parser.add_argument("--temperature", type=float, default=0.8, help="the model's sampling temperature")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    limit = int(os.environ["EVAL_LIMIT"]) if os.environ.get("EVAL_LIMIT") else None
    metrics = evaluate_animation(
        args.checkpoint, args.dataset, args.out, limit, args.seed, args.split, args.temperature
    )
    print(
        json.dumps(
            {k: v for k, v in metrics.items() if k not in ("samples", "by_label")}, indent=2, default=float
        )
    )


if __name__ == "__main__":
    main()
