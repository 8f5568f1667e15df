"""Derived supervision for the modifier specialist: stacks found in finished meshes, kept only
when real Blender rebuilds the mesh from them.

    python -m services.labeler modifiers-derive [--geometry full] [--modifier full] [--name full]

Most exported files had their modifiers applied, so the real stacks are few (62 in ``full``). The
meshes still carry the structure: for every mesh of the geometry dataset, shared.ml.modifier_structure
peels off Array, Solidify and Mirror (numpy, the cheap prefilter: only meshes with a candidate go on);
then worker children apply each candidate stack to its base in bpy, through the add-on's injector,
in batches under a time limit, and the pair is kept only when the result matches the original:

- face count: equal within FACE_TOLERANCE (share of the original's faces);
- vertices: every vertex of each mesh is matched to the nearest of the other's (a Chamfer distance
  over the vertices, both ways); the mean is at most SHAPE_MEAN_TOLERANCE and the largest at most
  SHAPE_MAX_TOLERANCE of the original's bounding-box diagonal;
- shape: every vertex and face centre of each mesh is measured to the other's surface or its
  nearest vertex or face centre, whichever is nearer (both ways), with the same two thresholds: two
  triangulations of one flat quad are the same surface, a face between the wrong vertices is not.
  (Over points alone, as before the relaxed rules, this is never larger, so no pair the point
  measure kept is lost.)

The detectors (shared.ml.modifier_structure) have strict and relaxed rules per type: Mirror (faces
mirror face for face; or only the points do, the halves triangulated apart; or the points within
LOOSE_MATCH_TOLERANCE), Array (every part one element on an axis-aligned step; or an element of
several parts on any step). The report counts candidates, verified pairs and rejections per type
and per rule.

Every geometry mesh becomes one item: a verified pair (``modifiers`` the stack, ``mesh`` the base,
``evaluated_mesh`` the original moved by ``origin``) or a negative (empty stack, the mesh as is),
each with ``derived_by`` naming the rules that found its stack. The real artists' stacks join them
(``derived_by: "artist"``), their meshes evaluated by the same Blender step so the model sees what it
will see when serving: a finished mesh. Items keep their geometry pack's split (a real item's pack
takes the geometry dataset's split where it has one), so nothing a model trains on shares a pack
with what it is tested on. Written as a dataset folder (manifest + tar shards, specialist
``modifier``) under <data_dir>/datasets/NAME/modifier/derived/ that shared.ml.datasets.iter_split
reads, with derive_report.json and derive_examples.png beside it (the labeler's own report.json of the
real-stack dataset lives in the same folder).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree
from tqdm import tqdm

from services.labeler.dataset import FORMAT_VERSION, SPLITS, canonical_json, tar_bytes
from shared.ml.datasets import iter_split
from shared.ml.modifier_pictures import draw_mesh, stack_text
from shared.ml.modifier_structure import MeshArrays, edge_faces, face_geometry, peel

FACE_TOLERANCE = 0.01
SHAPE_MEAN_TOLERANCE = 0.001
SHAPE_MAX_TOLERANCE = 0.01
SHARD_ITEMS = 256
DERIVED_TYPES = ("MIRROR", "ARRAY", "SOLIDIFY")


def _triangles(mesh: MeshArrays) -> np.ndarray:
    """(m, 3, 3) corner positions of the mesh's faces cut into fans of triangles."""
    tris = [(f[0], f[k], f[k + 1]) for f in mesh.faces for k in range(1, len(f) - 1)]
    return mesh.vertices[np.asarray(tris, dtype=np.int64).reshape(-1, 3)]


def point_triangle_distance(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Distance from each point (n, 3) to its triangle (n, 3, 3), row for row."""
    a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
    normal = np.cross(b - a, c - a)
    length = np.linalg.norm(normal, axis=1)
    unit = normal / np.maximum(length, 1e-30)[:, None]
    height = ((points - a) * unit).sum(1)
    projected = points - height[:, None] * unit
    inside = length > 1e-30
    for p, q in ((a, b), (b, c), (c, a)):
        inside &= (np.cross(q - p, projected - p) * normal).sum(1) >= 0
    best = np.full(len(points), np.inf)
    for p, q in ((a, b), (b, c), (c, a)):
        edge = q - p
        t = np.clip(((points - p) * edge).sum(1) / np.maximum((edge * edge).sum(1), 1e-30), 0, 1)
        best = np.minimum(best, np.linalg.norm(points - (p + t[:, None] * edge), axis=1))
    return np.where(inside, np.abs(height), best)


def surface_distance(points: np.ndarray, mesh: MeshArrays, k: int = 16) -> np.ndarray:
    """Distance from each point to the mesh's surface, over candidate triangles: those of the k
    nearest triangle centres and those around the k nearest vertices. A closer triangle outside the
    candidates is possible, so this is an upper bound of the true distance: it can reject a good
    pair, never accept a bad one."""
    tris = _triangles(mesh)
    kk = min(k, len(tris))
    near_tris = cKDTree(tris.mean(1)).query(points, k=kk)[1].reshape(len(points), -1)
    # triangles around each vertex
    corner_rows = np.repeat(np.arange(len(tris)), 3)
    corner_vertices = np.asarray(
        [v for f in mesh.faces for k2 in range(1, len(f) - 1) for v in (f[0], f[k2], f[k2 + 1])], np.int64
    )
    order = np.argsort(corner_vertices, kind="stable")
    sorted_vertices, sorted_rows = corner_vertices[order], corner_rows[order]
    kv = min(4, len(mesh.vertices))
    near_vertices = cKDTree(mesh.vertices).query(points, k=kv)[1].reshape(len(points), -1)
    best = np.full(len(points), np.inf)
    for column in range(near_tris.shape[1]):
        best = np.minimum(best, point_triangle_distance(points, tris[near_tris[:, column]]))
    starts = np.searchsorted(sorted_vertices, near_vertices, side="left")
    ends = np.searchsorted(sorted_vertices, near_vertices, side="right")
    spans = ends - starts
    for column in range(near_vertices.shape[1]):
        for offset in range(int(spans[:, column].max(initial=0))):
            rows = np.flatnonzero(spans[:, column] > offset)
            tri = sorted_rows[starts[rows, column] + offset]
            best[rows] = np.minimum(best[rows], point_triangle_distance(points[rows], tris[tri]))
    return best


def shape_distance(a: MeshArrays, b: MeshArrays) -> dict[str, float]:
    """How far two meshes are apart, as shares of a's bounding-box diagonal, the worse direction:
    ``vertex_mean``/``vertex_max``, from each vertex of one to the nearest vertex of the other (a
    stack that rebuilds a mesh puts every vertex back to float precision); ``shape_mean`` /
    ``shape_max``, from each vertex and face centre of one to the other's surface (two
    triangulations of one quad are the same surface; a face between the wrong vertices is not)."""
    there = cKDTree(b.vertices).query(a.vertices)[0]
    back = cKDTree(a.vertices).query(b.vertices)[0]
    pa = np.vstack([a.vertices, face_geometry(a)[1]])
    pb = np.vstack([b.vertices, face_geometry(b)[1]])
    # to the other's surface or to its nearest vertex or face centre, whichever is nearer: the
    # centre of a bent polygon is off its own fan of triangles, but it is where the other's is
    onto_b = np.minimum(surface_distance(pa, b), cKDTree(pb).query(pa)[0])
    onto_a = np.minimum(surface_distance(pb, a), cKDTree(pa).query(pb)[0])
    d = a.diagonal
    return {
        "vertex_mean": float(max(there.mean(), back.mean()) / d),
        "vertex_max": float(max(there.max(), back.max()) / d),
        "shape_mean": float(max(onto_b.mean(), onto_a.mean()) / d),
        "shape_max": float(max(onto_b.max(), onto_a.max()) / d),
    }


def verify(original: MeshArrays, result: dict[str, Any]) -> tuple[bool, str, dict[str, float]]:
    """(kept, reason, measures) for a candidate whose stack Blender applied (``result`` from
    blender_worker.modifier_apply)."""
    if not result.get("ok"):
        return False, "blender_error", {}
    try:
        rebuilt = MeshArrays.from_dict(result["mesh"])
    except ValueError:
        return False, "empty_result", {}
    faces = abs(len(rebuilt.faces) - len(original.faces)) / len(original.faces)
    distances = shape_distance(original, rebuilt)
    measures = {"face_difference": round(faces, 5), **{k: round(v, 7) for k, v in distances.items()}}
    if faces > FACE_TOLERANCE:
        return False, "face_count", measures
    if distances["vertex_mean"] > SHAPE_MEAN_TOLERANCE or distances["vertex_max"] > SHAPE_MAX_TOLERANCE:
        return False, "vertices", measures
    if distances["shape_mean"] > SHAPE_MEAN_TOLERANCE or distances["shape_max"] > SHAPE_MAX_TOLERANCE:
        return False, "shape", measures
    return True, "", measures


def _types(stack: list[dict[str, Any]]) -> list[str]:
    return [m["type"] for m in stack]


def derive(
    geometry_ref: str,
    modifier_ref: str | None,
    out_dir: Path,
    *,
    workers: int = 1,
    timeout_s: float = 120.0,
    limit: int | None = None,
    progress: bool = True,
    examples: int = 3,
    construct: int = 0,
) -> dict[str, Any]:
    """Builds the derived modifier dataset folder under ``out_dir``; returns the report."""
    from blender_worker.modifier_apply import apply_batch
    from blender_worker.settings import ExtractSettings

    started = time.perf_counter()
    geometry = [(split, item) for split in SPLITS for item in iter_split(geometry_ref, split)]
    if limit:
        geometry = geometry[:limit]
    split_of_pack = {item["pack"]: split for split, item in geometry}

    counts: dict[str, Counter[str]] = {t: Counter() for t in DERIVED_TYPES}
    candidates: dict[str, dict[str, Any]] = {}
    originals: dict[str, MeshArrays] = {}
    items: dict[str, dict[str, Any]] = {}
    detect_s = 0.0
    for split, item in tqdm(geometry, desc="detect", unit="mesh", disable=not progress):
        t = time.perf_counter()
        mesh = MeshArrays.from_dict(item["mesh"]).welded()
        found = peel(mesh)
        detect_s += time.perf_counter() - t
        fields = {k: item[k] for k in ("id", "asset_sha256", "object", "category", "captions", "license")}
        fields.update(attribution=item.get("attribution"), pack=item["pack"], split=split)
        items[item["id"]] = {
            **fields,
            "modifiers": [],
            "mesh": mesh.to_dict(),
            "evaluated_mesh": mesh.to_dict(),
            "origin": [0.0, 0.0, 0.0],
            "derived_by": [],
        }
        for kind, reason in found.rejections.items():
            counts[kind][f"not_found:{reason.split(':')[-1].split(',')[0]}"] += 1
        if found.stack:
            for kind, rule in zip(_types(found.stack), found.rules, strict=True):
                counts[kind]["candidates"] += 1
                counts[kind][f"candidates:{rule}"] += 1
            shifted = MeshArrays(mesh.vertices - found.origin, mesh.faces)
            originals[item["id"]] = shifted
            candidates[item["id"]] = {
                "id": item["id"],
                "mesh": found.base.to_dict(),
                "modifiers": found.stack,
                "origin": found.origin.tolist(),
                "rules": found.rules,
            }

    real: list[tuple[str, dict[str, Any]]] = []
    if modifier_ref:
        for split in SPLITS:
            for item in iter_split(modifier_ref, split, "modifier"):
                if item["mesh"]["faces"]:
                    real.append((split_of_pack.get(item["pack"], split), item))
    # Training pairs, and a quarter as many per type from the held-out packs: a separate question
    # set for the evaluation (the only one with Bevel and Subdivision), never trained on.
    constructed = [
        c
        for split, per_type in (("train", construct), ("val", construct // 4), ("test", construct // 4))
        for c in construct_stacks(
            [
                (item, items[item["id"]])
                for s, item in geometry
                if s == split and item["id"] not in candidates
            ],
            per_type,
        )
    ]
    jobs = [{"id": c["id"], "mesh": c["mesh"], "modifiers": c["modifiers"]} for c in candidates.values()] + [
        {"id": f"real/{r['id']}", "mesh": r["mesh"], "modifiers": r["modifiers"]} for _, r in real
    ]
    jobs += [{"id": c["id"], "mesh": c["mesh"], "modifiers": c["modifiers"]} for c in constructed]

    t = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="blender", unit="stack", disable=not progress)
    applied = {
        r["id"]: r
        for r in apply_batch(
            jobs, ExtractSettings(workers=workers, timeout_s=timeout_s), on_result=lambda _: bar.update()
        )
    }
    bar.close()
    blender_s = time.perf_counter() - t

    verified: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for item_id, candidate in tqdm(candidates.items(), desc="verify", unit="stack", disable=not progress):
        kept, reason, measures = verify(originals[item_id], applied[item_id])
        kinds = _types(candidate["modifiers"])
        if not kept:
            for kind, rule in zip(kinds, candidate["rules"], strict=True):
                counts[kind][f"rejected:{reason}"] += 1
                counts[kind][f"rejected:{rule}"] += 1
            items[item_id]["verification"] = {"kept": False, "reason": reason, **measures}
            if applied[item_id].get("mesh"):
                rejected.append(
                    {
                        **items[item_id],
                        "modifiers": candidate["modifiers"],
                        "mesh": candidate["mesh"],
                        "evaluated_mesh": originals[item_id].to_dict(),
                        "derived_by": candidate["rules"],
                        "result": applied[item_id]["mesh"],
                    }
                )
            continue
        for kind, rule in zip(kinds, candidate["rules"], strict=True):
            counts[kind]["verified"] += 1
            counts[kind][f"verified:{rule}"] += 1
        items[item_id].update(
            modifiers=candidate["modifiers"],
            mesh=candidate["mesh"],
            evaluated_mesh=originals[item_id].to_dict(),
            origin=candidate["origin"],
            derived_by=candidate["rules"],
            verification={"kept": True, **measures},
        )
        verified.append({**items[item_id], "result": applied[item_id]["mesh"]})

    real_failures: Counter[str] = Counter()
    for split, item in real:
        answer = applied[f"real/{item['id']}"]
        if "mesh" not in answer or not answer["mesh"]["faces"]:
            real_failures[(answer.get("error") or "no faces")[:80]] += 1
            continue
        items[f"real/{item['id']}"] = {
            **{k: item[k] for k in ("id", "asset_sha256", "object", "category", "captions", "license")},
            "attribution": item.get("attribution"),
            "pack": item["pack"],
            "split": split,
            "modifiers": item["modifiers"],
            "mesh": item["mesh"],
            "evaluated_mesh": answer["mesh"],
            "origin": [0.0, 0.0, 0.0],
            "derived_by": "artist",
            "apply_warnings": answer.get("warnings", [])[:5],
        }

    built: dict[str, Counter[str]] = defaultdict(Counter)
    for item in constructed:
        answer = applied[item["id"]]
        if answer.get("ok") and answer["mesh"]["faces"]:
            items[item["id"]] = {**item, "evaluated_mesh": answer["mesh"]}
            built[item["split"]][item["modifiers"][0]["type"]] += 1

    manifest = write_dataset(list(items.values()), out_dir / "derived", geometry_ref)
    stacks = Counter(
        " > ".join(_types(i["modifiers"])) or "(none)" for i in items.values() if i["derived_by"] != "artist"
    )
    report = {
        "geometry_dataset": str(geometry_ref),
        "modifier_dataset": str(modifier_ref) if modifier_ref else None,
        "meshes": len(geometry),
        "meshes_with_candidates": len(candidates),
        "verified_pairs": len(verified),
        "per_type": {k: dict(sorted(v.items())) for k, v in counts.items()},
        "not_derived": {
            "BEVEL": "no detector: undoing a bevel needs the pre-bevel edges, which the mesh no longer has",
            "SUBSURF": "no detector: inverting Catmull-Clark needs the cage topology and a solve; not built",
        },
        "stacks": dict(stacks.most_common()),
        "real_items": sum(1 for i in items.values() if i["derived_by"] == "artist"),
        "constructed": {split: dict(counts) for split, counts in built.items()},
        "real_not_applied": dict(real_failures),
        "thresholds": {
            "face_difference_max": FACE_TOLERANCE,
            "shape_mean_max": SHAPE_MEAN_TOLERANCE,
            "shape_max_max": SHAPE_MAX_TOLERANCE,
        },
        "seconds": {
            "detect": round(detect_s, 1),
            "blender": round(blender_s, 1),
            "total": round(time.perf_counter() - started, 1),
        },
        "blender_workers": workers,
        "splits": {s: manifest["splits"][s]["items"] for s in SPLITS},
        "version": manifest["version"],
        "dataset": str(out_dir / "derived"),
    }
    (out_dir / "derive_report.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    render_examples(verified, out_dir / "derive_examples.png", examples)
    render_examples(rejected, out_dir / "derive_rejected.png", 2, rejected=True)
    return report


def construct_stacks(
    pool: list[tuple[dict[str, Any], dict[str, Any]]], per_type: int
) -> list[dict[str, Any]]:
    """Pairs made the other way round, for the types few finished meshes reveal: a training mesh
    with no stack found gets a Solidify (open surfaces), a Subdivision (quad cages), a Bevel
    (closed meshes) or an Array, with seeded random parameters; Blender's result becomes the
    finished mesh (``derived_by: ["constructed"]``). At most ``per_type`` each, from the pool's split
    (the items keep it)."""
    rng = np.random.default_rng(0)
    out: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    for source, item in pool:
        mesh = MeshArrays.from_dict(item["mesh"])
        if len(mesh.faces) > 400:
            continue
        diagonal = mesh.diagonal
        open_surface = any(len(users) == 1 for users in edge_faces(mesh.faces).values())
        quads = np.mean([len(f) == 4 for f in mesh.faces])
        choices = ["ARRAY", "BEVEL" if not open_surface else "SOLIDIFY"]
        if quads > 0.6:
            choices.append("SUBSURF")
        kind = str(rng.choice([c for c in choices if counts[c] < per_type] or ["none"]))
        if kind == "none":
            continue
        if kind == "SOLIDIFY":
            params: dict[str, Any] = {
                "thickness": float(rng.uniform(0.005, 0.05) * diagonal),
                "offset": -1.0,
                "use_even_offset": bool(rng.random() < 0.5),
            }
        elif kind == "SUBSURF":
            levels = int(rng.integers(1, 3))
            params = {"levels": levels, "render_levels": levels}
        elif kind == "BEVEL":
            params = {
                "width": float(rng.uniform(0.005, 0.04) * diagonal),
                "segments": int(rng.choice([1, 2, 3, 4])),
                "limit_method": "ANGLE",
            }
        else:
            step = [0.0, 0.0, 0.0]
            step[int(rng.integers(3))] = float(rng.choice([1.0, 1.1, 1.25, 1.5, 2.0]))
            params = {
                "fit_type": "FIXED_COUNT",
                "count": int(rng.integers(2, 7)),
                "use_relative_offset": True,
                "relative_offset_displace": step,
                "use_constant_offset": False,
                "use_merge_vertices": False,
            }
        counts[kind] += 1
        modifier = {
            "name": kind.title() if kind != "SUBSURF" else "Subdivision",
            "type": kind,
            "params": params,
        }
        out.append(
            {
                **item,
                "id": f"constructed/{kind.lower()}/{source['id']}",
                "modifiers": [modifier],
                "mesh": mesh.to_dict(),
                "derived_by": ["constructed"],
            }
        )
    return out


def write_dataset(items: list[dict[str, Any]], folder: Path, source: str) -> dict[str, Any]:
    """Items as a modifier dataset folder (manifest.json + shards/<sha256>), split by their ``split``."""
    (folder / "shards").mkdir(parents=True, exist_ok=True)
    by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for item in sorted(items, key=lambda i: i["id"]):
        by_split[item["split"]].append(item)
    splits = {}
    for split, members in by_split.items():
        shards = []
        for start in range(0, len(members), SHARD_ITEMS):
            chunk = members[start : start + SHARD_ITEMS]
            data = tar_bytes(
                [
                    (f"{hashlib.sha256(i['id'].encode()).hexdigest()[:24]}.json", canonical_json(i))
                    for i in chunk
                ]
            )
            sha = hashlib.sha256(data).hexdigest()
            (folder / "shards" / sha).write_bytes(data)
            shards.append(sha)
        splits[split] = {"shards": shards, "items": len(members)}
    content = {"specialist": "modifier", "splits": splits, "format": FORMAT_VERSION, "source": source}
    manifest = {
        **content,
        "name": f"{folder.parent.parent.name}-derived",
        "version": hashlib.sha256(canonical_json(content)).hexdigest()[:16],
        "derived": True,
        "attributions": sorted({i["attribution"] for i in items if i.get("attribution")}),
        "licenses": dict(Counter(i["license"] for i in items)),
    }
    (folder / "manifest.json").write_bytes(canonical_json(manifest, indent=1))
    return manifest


def render_examples(
    verified: list[dict[str, Any]], path: Path, per_type: int, rejected: bool = False
) -> None:
    """Rows of verified pairs (or rejected candidates), a few per stack and rule: base, stack,
    Blender's result, original."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in verified:
        key = " > ".join(
            f"{t} ({r})" for t, r in zip(_types(item["modifiers"]), item["derived_by"], strict=True)
        )
        if len(by_type[key]) < per_type:
            by_type[key].append(item)
    # every stack and rule once before any twice
    groups = list(by_type.values())
    rows = [g[k] for k in range(per_type) for g in groups if k < len(g)][:14]
    if not rows:
        return
    fig = plt.figure(figsize=(10, 2.6 * len(rows)))
    for r, item in enumerate(rows):
        panels = [
            (item["mesh"], f"base: {len(item['mesh']['faces'])} faces"),
            (
                None,
                stack_text(item["modifiers"])
                + "\nrules: "
                + ", ".join(item["derived_by"])
                + (
                    f"\nREJECTED: {item['verification']['reason']}\n"
                    f"shape mean {item['verification'].get('shape_mean')}\n"
                    f"shape max {item['verification'].get('shape_max')}"
                    if rejected
                    else ""
                ),
            ),
            (item["result"], f"Blender result: {len(item['result']['faces'])} faces"),
            (
                item["evaluated_mesh"],
                f"original: {item['object'][:24]}, {len(item['evaluated_mesh']['faces'])} faces",
            ),
        ]
        for c, (mesh, title) in enumerate(panels):
            ax = fig.add_subplot(len(rows), 4, r * 4 + c + 1, projection="3d" if mesh else None)
            if mesh is None:
                ax.text(0.0, 0.5, title, fontsize=8, va="center", family="monospace")
                ax.set_axis_off()
                continue
            draw_mesh(
                ax, MeshArrays.from_dict(mesh), title, frame=MeshArrays.from_dict(item["evaluated_mesh"])
            )
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
