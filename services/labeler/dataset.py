"""Versioned, reproducible datasets for the four specialists (format: docs/notes common brief,
"Dataset format"): items built from labelled scene objects, split by source pack so nothing
leaks between train/val/test, written as deterministic tar shards and a manifest into the blob
store, with Dataset and DatasetSplit rows and a statistics report (JSON + PNG).

Reproducible: the same database contents and seed give byte-identical shards and manifest (no
timestamps, sorted keys and members); the version is derived from that content.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.labeler import attributes
from services.labeler.dedup import Candidate, cluster
from services.labeler.labeller import asset_names
from services.labeler.orientation import upright_mesh, world_linear
from shared import names
from shared.blobs import BlobStore
from shared.db.models import Asset, Dataset, DatasetSplit, Extraction, ExtractionStatus, SceneObject
from shared.settings import Settings

SPECIALISTS = ("geometry", "material", "modifier", "animation")
SPLITS = ("train", "val", "test")
FORMAT_VERSION = 2  # 2: every manifest entry carries its item's content hashes

# Attribution for corpus sources whose license requires it, when the asset row carries none
# (text from ../shared/corpus/README.md).
KNOWN_ATTRIBUTIONS = {
    "Zeyu-Li/free-blender-models": "Free Blender Models by Zeyu Li "
    "(https://github.com/Zeyu-Li/free-blender-models), licensed under Creative Commons "
    "Attribution 4.0 International (CC-BY-4.0)",
}
_NEEDS_ATTRIBUTION = ("CC-BY", "Apache", "BSD", "MIT")


class DatasetBuildError(RuntimeError):
    """The inputs cannot make a dataset (nothing labelled, unknown specialist...)."""


def attribution_for(asset: Asset) -> str | None:
    """The attribution its source asks for (the corpus README's text), else the asset's own, else a
    generic notice where the license requires one; None for public-domain style licenses (CC0)."""
    for repo, text in KNOWN_ATTRIBUTIONS.items():
        if repo in (asset.source_url or ""):
            return text
    if asset.attribution:
        return asset.attribution
    if asset.license.startswith(_NEEDS_ATTRIBUTION):
        who = f" by {asset.author}" if asset.author else ""
        return f"{asset.title or asset.source_path or asset.sha256}{who}, from {asset.source_url}, {asset.license}"
    return None


@dataclass
class ObjectRecord:
    """What the builder needs of one labelled object, read once from the database."""

    row: SceneObject
    asset: Asset
    scene_key: str
    pack: str

    @property
    def key(self) -> str:
        return f"{self.asset.sha256}/{self.row.name}"

    @property
    def captions(self) -> list[str]:
        return list((self.row.labels or {}).get("captions") or [])

    def base_item(self, kind_key: str) -> dict[str, Any]:
        return {
            "id": item_id(self.asset.sha256, kind_key),
            "asset_sha256": self.asset.sha256,
            "object": self.row.name,
            "category": self.row.category or "primitive",
            "captions": self.captions,
            "license": self.asset.license,
            "attribution": attribution_for(self.asset),
            "pack": self.pack,
        }


@dataclass
class Build:
    items: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # item id -> split group (pack)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # item id -> manifest entry
    dropped_duplicates: int = 0
    clusters: list[list[str]] = field(default_factory=list)


def item_id(asset_sha256: str, key: str) -> str:
    return f"{asset_sha256[:16]}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def load_records(session: Session) -> list[ObjectRecord]:
    """Labelled objects of each asset's newest successful extraction, in a stable order."""
    newest = (
        select(Extraction.asset_id, func.max(Extraction.id).label("id"))
        .where(Extraction.status == ExtractionStatus.OK, Extraction.scene_key.is_not(None))
        .group_by(Extraction.asset_id)
        .subquery()
    )
    rows = session.execute(
        select(SceneObject, Asset, Extraction.scene_key)
        .join(Extraction, SceneObject.extraction_id == Extraction.id)
        .join(newest, newest.c.id == Extraction.id)
        .join(Asset, Asset.id == SceneObject.asset_id)
        .where(SceneObject.labels.is_not(None))
    ).all()
    records = [
        ObjectRecord(row, asset, scene_key or "", asset_names(asset)["pack"] or asset.sha256)
        for row, asset, scene_key in rows
        if row.labels
    ]
    return sorted(records, key=lambda r: r.key)


class SceneCache:
    """Scene documents by blob key, kept while one build runs."""

    def __init__(self, store: BlobStore):
        self.store = store
        self.docs: dict[str, dict[str, Any]] = {}
        self.by_name: dict[str, dict[str, dict[str, Any]]] = {}

    def get(self, key: str) -> dict[str, Any]:
        if key not in self.docs:
            self.docs[key] = json.loads(self.store.get_bytes(key))
        return self.docs[key]

    def objects(self, key: str) -> dict[str, dict[str, Any]]:
        """A scene's objects by name (the first of a name, as Blender's names are unique)."""
        if key not in self.by_name:
            named: dict[str, dict[str, Any]] = {}
            for o in self.get(key)["objects"]:
                named.setdefault(o["name"], o)
            self.by_name[key] = named
        return self.by_name[key]

    def object(self, record: ObjectRecord) -> dict[str, Any]:
        return self.objects(record.scene_key)[record.row.name]


# ---- items per specialist ---------------------------------------------------------------------


def _geometry_items(
    records: list[ObjectRecord], scenes: SceneCache, settings: Settings, build: Build
) -> None:
    accepted = [r for r in records if r.row.rejection_reason is None and r.row.geometry_hash]
    leader_of = cluster(
        [
            Candidate(
                r.key, r.row.geometry_hash or "", tuple(r.row.quality_flags.get("shape_descriptor") or ())
            )
            for r in accepted
        ],
        settings.dedup_near_threshold,
    )
    members: dict[str, list[str]] = defaultdict(list)
    for key, leader in leader_of.items():
        members[leader].append(key)
    build.clusters = sorted(sorted(m) for m in members.values() if len(m) > 1)
    for record in accepted:
        if leader_of[record.key] != record.key:
            build.dropped_duplicates += 1
            continue
        objects = scenes.objects(record.scene_key)
        obj = objects[record.row.name]
        mesh = obj.get("evaluated_mesh") or obj["mesh"]  # accepted objects have geometry
        item = record.base_item(record.row.name)
        item["mesh"] = upright_mesh(mesh, world_linear(record.row.name, objects))
        item["duplicates"] = len(members[record.key]) - 1
        _add(build, record, item)


def _material_items(
    records: list[ObjectRecord], scenes: SceneCache, settings: Settings, build: Build
) -> None:
    seen: set[str] = set()
    for record in records:
        if record.row.type != "MESH":
            continue
        doc = scenes.get(record.scene_key)
        materials = {m["name"]: m for m in doc.get("materials", [])}
        groups = {g["name"]: g for g in doc.get("node_groups", [])}
        for slot in scenes.object(record).get("material_slots") or []:
            material = materials.get(slot) if slot else None
            if material is None:
                continue
            content = {k: material.get(k) for k in ("pbr", "node_tree", "source")}
            digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
            if digest in seen:  # the same material (by content) under another name or asset
                build.dropped_duplicates += 1
                continue
            seen.add(digest)
            item = record.base_item(f"material/{material['name']}")
            item.update(
                material=material["name"],
                captions=material_captions(material, (record.row.labels or {}).get("noun") or ""),
                pbr=material.get("pbr") or {},
                node_tree=material.get("node_tree"),
                source=material.get("source", "nodes"),
                node_groups=[
                    groups[n] for n in sorted(_referenced_groups(material.get("node_tree"), groups))
                ],
                content_sha256=digest,
            )
            _add(build, record, item)


def _modifier_items(
    records: list[ObjectRecord], scenes: SceneCache, settings: Settings, build: Build
) -> None:
    seen: set[str] = set()
    for record in records:
        if record.row.rejection_reason is not None or not record.row.modifier_count:
            continue
        obj = scenes.object(record)
        stack = [m for m in obj.get("modifiers") or [] if m["type"] != "ARMATURE"]
        if not stack:  # a lone Armature modifier is rigging, which the animation specialist covers
            continue
        digest = hashlib.sha256(
            json.dumps([stack, record.row.geometry_hash], sort_keys=True).encode()
        ).hexdigest()
        if digest in seen:
            build.dropped_duplicates += 1
            continue
        seen.add(digest)
        mesh = obj.get("mesh") or {}
        item = record.base_item(f"modifiers/{record.row.name}")
        item.update(
            modifiers=stack,
            mesh={"vertices": mesh.get("vertices", []), "faces": mesh.get("faces", [])},
            mesh_stats={
                "vertices": record.row.vertex_count,
                "faces": record.row.face_count,
                "triangles": record.row.triangle_count,
                "bbox_min": record.row.bbox_min,
                "bbox_max": record.row.bbox_max,
            },
        )
        _add(build, record, item)


def _animation_items(
    records: list[ObjectRecord], scenes: SceneCache, settings: Settings, build: Build
) -> None:
    seen: set[str] = set()
    for record in records:
        if not record.row.has_animation:
            continue
        doc = scenes.get(record.scene_key)
        obj = scenes.object(record)
        animation = obj.get("animation") or {}
        shape_keys = (obj.get("mesh") or {}).get("shape_key_animation")
        action_names = sorted(_referenced_actions([animation, shape_keys or {}]))
        actions = [a for a in doc.get("actions", []) if a["name"] in action_names]
        digest = hashlib.sha256(
            json.dumps([actions, obj.get("armature")], sort_keys=True).encode()
        ).hexdigest()
        if digest in seen:
            build.dropped_duplicates += 1
            continue
        seen.add(digest)
        noun = (record.row.labels or {}).get("noun") or record.row.category or "object"
        motions = [names.phrase(a) for a in action_names if names.phrase(a)]
        item = record.base_item(f"animation/{record.row.name}")
        item.update(
            object_type=record.row.type,
            captions=record.captions + [f"{noun} {m} animation" for m in motions],
            animation=animation,
            shape_key_animation=shape_keys,
            actions=actions,
            armature=obj.get("armature"),
            fps=doc.get("fps", 24.0),
            frame_range=[doc.get("frame_start", 1), doc.get("frame_end", 250)],
        )
        _add(build, record, item)


BUILDERS = {
    "geometry": _geometry_items,
    "material": _material_items,
    "modifier": _modifier_items,
    "animation": _animation_items,
}


def _add(build: Build, record: ObjectRecord, item: dict[str, Any]) -> None:
    build.items.append(item)
    build.groups[item["id"]] = record.pack
    build.entries[item["id"]] = {
        "id": item["id"],
        "license": item["license"],
        "attribution": item["attribution"],
        "source_url": record.asset.source_url,
        "pack": record.pack,
        "category": item["category"],
        "asset_sha256": record.asset.sha256,
        "object": record.row.name,
        "faces": record.row.face_count,
    }
    build.entries[item["id"]].update(content_hashes(item, build.entries[item["id"]]))


def content_hashes(item: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The item's sha256 (of its bytes in the shard) and one short hash per field the manifest
    entry does not already carry in clear (mesh, captions, material...): what a diff of two
    versions names when an item changed."""
    return {
        "sha256": hashlib.sha256(canonical_json(item)).hexdigest(),
        "hashes": {
            key: hashlib.sha256(canonical_json(value)).hexdigest()[:16]
            for key, value in sorted(item.items())
            if key not in entry
        },
    }


def _referenced_groups(tree: dict[str, Any] | None, groups: dict[str, dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    pending = [tree] if tree else []
    while pending:
        for node in pending.pop().get("nodes", []):
            name = node.get("node_tree")
            if name in groups and name not in found:
                found.add(name)
                pending.append(groups[name])
    return found


def _referenced_actions(animations: list[dict[str, Any]]) -> set[str]:
    found = set()
    for animation in animations:
        if animation.get("action"):
            found.add(animation["action"])
        for track in animation.get("nla_tracks", []):
            found.update(s["action"] for s in track.get("strips", []) if s.get("action"))
    return found


def material_captions(material: dict[str, Any], noun: str) -> list[str]:
    pbr = material.get("pbr") or {}
    textured = bool(pbr.get("textures"))
    colour = (
        ""
        if "base_color" in (pbr.get("textures") or {})
        else attributes.colour_name(pbr.get("base_color") or (0.8, 0.8, 0.8))
    )
    finish = [
        w
        for w, on in (
            ("metallic", pbr.get("metallic", 0.0) > 0.5),
            ("glossy", pbr.get("roughness", 0.5) < 0.25),
            ("rough", pbr.get("roughness", 0.5) > 0.75),
            (
                "emissive",
                pbr.get("emission_strength", 0.0) > 0
                and any(c > 0 for c in (pbr.get("emission_color") or (0, 0, 0))[:3]),
            ),
            ("transparent", pbr.get("alpha", 1.0) < 0.99 or pbr.get("transmission", 0.0) > 0.5),
            ("textured", textured),
        )
        if on
    ]
    words = names.phrase(material["name"])
    head = " ".join(w for w in (*finish, colour) if w) or "plain"
    out = [f"{head} material", f"{head} {words} material".replace("  ", " ")]
    if noun:
        out.append(f"{head} material for a {noun}")
    return list(dict.fromkeys(out))


# ---- splits, shards, manifest -----------------------------------------------------------------


def assign_splits(
    group_sizes: dict[str, int], fractions: tuple[float, float, float], seed: int
) -> dict[str, str]:
    """Whole groups (packs) to splits: groups in a seeded random order, largest first, each to the
    split furthest below its target share; val and test get at least one group when there are
    three or more."""
    order = sorted(group_sizes)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda g: -group_sizes[g])  # stable: ties keep the seeded order
    total = sum(group_sizes.values())
    counts = dict.fromkeys(SPLITS, 0)
    split_of: dict[str, str] = {}
    for group in order:
        split = max(SPLITS, key=lambda s: fractions[SPLITS.index(s)] * total - counts[s])
        split_of[group] = split
        counts[split] += group_sizes[group]
    if len(order) >= 3:
        for split in ("test", "val"):
            if counts[split] == 0:
                donors = [g for g in reversed(order) if split_of[g] == "train"]
                if donors:
                    split_of[donors[0]] = split
                    counts[split] += group_sizes[donors[0]]
                    counts["train"] -= group_sizes[donors[0]]
    return split_of


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """An uncompressed POSIX tar with sorted members, mtime 0, uid/gid 0 and no user names."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def canonical_json(value: Any, indent: int | None = None) -> bytes:
    return json.dumps(
        value, sort_keys=True, indent=indent, ensure_ascii=False, separators=None if indent else (",", ":")
    ).encode()


def _chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class BuildResult:
    dataset_id: int
    name: str
    version: str
    specialist: str
    manifest_key: str
    manifest: dict[str, Any]
    created: bool


def build_dataset(
    session: Session, store: BlobStore, settings: Settings, *, name: str, specialist: str, seed: int
) -> BuildResult:
    """Build (or find, when the same content was built before) one dataset version."""
    if specialist not in BUILDERS:
        raise DatasetBuildError(f"unknown specialist {specialist!r}; expected one of {SPECIALISTS}")
    records = load_records(session)
    if not records:
        raise DatasetBuildError("no labelled objects in the database: extract and label assets first")
    scenes = SceneCache(store)
    build = Build()
    BUILDERS[specialist](records, scenes, settings, build)
    if not build.items:
        raise DatasetBuildError(f"no {specialist} items among {len(records)} labelled objects")

    group_sizes = Counter(build.groups.values())
    split_of_group = assign_splits(dict(group_sizes), settings.dataset_split_fractions, seed)
    by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for item in build.items:
        by_split[split_of_group[build.groups[item["id"]]]].append(item)
    splits: dict[str, dict[str, Any]] = {}
    for split, items in by_split.items():
        items.sort(key=lambda i: i["id"])
        shards = [
            store.put_bytes(tar_bytes([(f"{i['id']}.json", canonical_json(i)) for i in chunk]))
            for chunk in _chunks(items, settings.dataset_shard_items)
        ]
        splits[split] = {"shards": shards, "items": len(items)}
    entries = sorted(
        ({**build.entries[i["id"]], "split": s} for s, items in by_split.items() for i in items),
        key=lambda e: e["id"],
    )
    stats = dataset_stats(records, entries, build)
    content = {
        "specialist": specialist,
        "seed": seed,
        "splits": splits,
        "items": entries,
        "format": FORMAT_VERSION,
    }
    version = hashlib.sha256(canonical_json(content)).hexdigest()[:16]
    attributions = sorted({e["attribution"] for e in entries if e["attribution"]})
    manifest = {
        "name": name,
        "version": version,
        "format": FORMAT_VERSION,
        "specialist": specialist,
        "seed": seed,
        "splits": splits,
        "items": entries,
        "attributions": attributions,
        "stats": stats,
    }
    manifest_key = store.put_bytes(canonical_json(manifest, indent=1))
    existing = session.scalar(
        select(Dataset).where(
            Dataset.name == name, Dataset.version == version, Dataset.specialist == specialist
        )
    )
    if existing is not None:
        return BuildResult(existing.id, name, version, specialist, existing.manifest_key, manifest, False)
    dataset = Dataset(
        name=name, version=version, specialist=specialist, seed=seed, manifest_key=manifest_key, stats=stats
    )
    dataset.splits = [
        DatasetSplit(split=s, item_count=splits[s]["items"], shard_keys=splits[s]["shards"]) for s in SPLITS
    ]
    session.add(dataset)
    session.flush()
    return BuildResult(dataset.id, name, version, specialist, manifest_key, manifest, True)


def dataset_stats(records: list[ObjectRecord], entries: list[dict[str, Any]], build: Build) -> dict[str, Any]:
    faces = sorted(e["faces"] for e in entries)
    return {
        "items": len(entries),
        "per_split": dict(sorted(Counter(e["split"] for e in entries).items())),
        "packs_per_split": {s: len({e["pack"] for e in entries if e["split"] == s}) for s in SPLITS},
        "categories": dict(sorted(Counter(e["category"] for e in entries).items())),
        "licenses": dict(sorted(Counter(e["license"] for e in entries).items())),
        "faces": {
            "min": faces[0] if faces else 0,
            "median": faces[len(faces) // 2] if faces else 0,
            "max": faces[-1] if faces else 0,
            "values": faces,
        },
        "objects_considered": len(records),
        "rejections": rejection_counts(records),
        "duplicates_dropped": build.dropped_duplicates,
        "duplicate_clusters": build.clusters,
    }


def rejection_counts(records: list[ObjectRecord]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for record in records:
        for code in (record.row.quality_flags or {}).get("failed") or []:
            counts[code] += 1
    return dict(sorted(counts.items()))
