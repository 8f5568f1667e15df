"""Labelling one extraction: names, a category, attributes and captions, quality flags and the
geometry hash of each of its objects, written onto its SceneObject rows.

Idempotent: labelling an extraction again recomputes everything from the scene document and the
asset row and overwrites the previous result.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from services.labeler import attributes, geometry
from services.labeler.taxonomy import choose_categories
from shared import names
from shared.blobs import BlobStore
from shared.db.models import Asset, Extraction, SceneObject
from shared.settings import Settings

LABELLER_VERSION = "2"

# How much each name source is trusted as a description of the object.
NAME_CONFIDENCE = {
    "asset_name": 0.9,
    "title": 0.9,
    "tags": 0.8,
    "path_category": 0.7,
    "object": 0.6,
    "pack": 0.5,
    "mesh": 0.5,
    "description": 0.5,
    "material": 0.3,
}


def asset_names(asset: Asset) -> dict[str, str]:
    """Category, pack and asset name from the asset's metadata, else parsed from its path."""
    meta = asset.meta or {}
    # corpus_path: this package's corpus loop; local_path: the scraper's local source.
    parsed = names.path_parts(meta.get("corpus_path") or meta.get("local_path"), asset.source_path)
    return {key: meta.get(key) or parsed[key] for key in ("category", "pack", "asset_name")}


def label_extraction(
    session: Session, store: BlobStore, extraction_id: int, settings: Settings
) -> dict[str, Any]:
    """Label every object of one extraction; returns counts for the job record."""
    extraction = session.get(Extraction, extraction_id)
    if extraction is None:
        raise LookupError(f"no extraction with id {extraction_id}")
    if not extraction.scene_key:
        raise ValueError(f"extraction {extraction_id} has no scene document (status {extraction.status})")
    doc = json.loads(store.get_bytes(extraction.scene_key))
    asset = extraction.asset
    by_name = {o["name"]: o for o in doc.get("objects", [])}
    materials = {m["name"]: m for m in doc.get("materials", [])}
    rows = sorted(extraction.objects, key=lambda r: r.name)
    missing = [r.name for r in rows if r.name not in by_name]
    if missing:
        raise ValueError(f"extraction {extraction_id}: objects {missing} are not in its scene document")

    path = asset_names(asset)
    meta = asset.meta or {}
    source_names = {
        "asset_name": names.phrase(path["asset_name"]),
        "title": names.phrase(asset.title),
        "tags": names.phrase(" ".join(meta.get("tags") or [])),
        "path_category": names.phrase(path["category"]),
        "pack": names.pack_phrase(path["pack"]),
        "description": " ".join(names.words(meta.get("description"))[:24]),
    }
    mesh_objects = sum(1 for r in rows if r.type == "MESH")
    # A test scene's objects are what its own names say (a cube, a monkey head), not its file name.
    fixture = names.is_test_fixture(asset.source_path)
    per_object = []
    for row in rows:
        obj = by_name[row.name]
        found = dict(source_names)
        found["object"] = names.phrase(obj["name"], primitives=fixture)
        mesh_doc = obj.get("evaluated_mesh") or obj.get("mesh")
        found["mesh"] = names.phrase(mesh_doc["name"], primitives=fixture) if mesh_doc else ""
        found["material"] = " ".join(
            dict.fromkeys(names.phrase(s) for s in obj.get("material_slots") or [] if s)
        )
        if fixture:
            noun = found["object"] or found["mesh"] or found["asset_name"]
        else:
            noun = found["asset_name"] or found["title"] or found["object"] or found["mesh"]
        if mesh_objects > 1 and not fixture:  # a part of a larger asset: say which part, once
            extra = [w for w in found["object"].split() if w not in noun.split()]
            if extra:
                noun = f"{' '.join(extra)} of {noun}" if noun else " ".join(extra)
        per_object.append((row, obj, mesh_doc, found, noun))

    choices = choose_categories(
        [
            [
                (noun, 0.5),
                (found["object"], 0.2),
                (f"{found['path_category']} {found['pack']}".strip(), 0.2),
                (f"{found['tags']} {found['description']}".strip(), 0.2),
            ]
            for _, _, _, found, noun in per_object
        ]
    )
    counts = {"objects": len(rows), "rejected": 0}
    for (row, obj, mesh_doc, found, noun), choice in zip(per_object, choices, strict=True):
        _label_object(row, obj, mesh_doc, found, noun, choice, materials, settings)
        counts["rejected"] += row.rejection_reason is not None
    return counts


def _label_object(
    row: SceneObject,
    obj: dict[str, Any],
    mesh_doc: dict[str, Any] | None,
    found: dict[str, str],
    noun: str,
    choice: Any,
    materials: dict[str, dict[str, Any]],
    settings: Settings,
) -> None:
    modifiers = [m["type"] for m in obj.get("modifiers") or []]
    flags: dict[str, Any]
    if row.type != "MESH" or mesh_doc is None:
        flags = {"failed": [("not_mesh", f"{row.type} object has no mesh")]}
        mesh = None
    else:
        mesh = geometry.MeshArrays.from_doc(mesh_doc)
        scale = tuple((obj.get("transform") or {}).get("scale") or (1.0, 1.0, 1.0))
        flags = geometry.quality(mesh, settings, scale)  # type: ignore[arg-type]
    failed = flags.pop("failed")
    flags["failed"] = [code for code, _ in failed]
    row.rejection_reason = "; ".join(f"{code}: {detail}" for code, detail in failed) or None

    axes: list[str] = []
    diagonal = 0.0
    if mesh is not None and len(mesh.vertices):
        row.geometry_hash = geometry.geometry_hash(mesh, settings.dedup_quantization_bits)
        flags["shape_descriptor"] = geometry.shape_descriptor(mesh, seed=int(row.geometry_hash[:8], 16))
        axes = geometry.mirror_axes(mesh)
        diagonal = flags.get("world_diagonal", mesh.diagonal())
    else:
        row.geometry_hash = None
    row.quality_flags = flags

    mirrored = "MIRROR" in modifiers
    colours = attributes.dominant_colours(obj, materials)
    attrs: dict[str, Any] = {
        "colours": colours,
        "size": attributes.size_class(diagonal) if mesh is not None else None,
        "low_poly": mesh is not None and len(mesh.faces) <= settings.label_low_poly_faces,
        "animated": bool(row.has_animation),
        "symmetric": mirrored or bool(axes),
        "mirror_axes": axes,
        "modifiers": modifiers,
    }
    # Colours and size are guesses from data (textures hide colours, units vary between files);
    # face counts, animation and a mirror modifier are facts.
    attribute_confidence = {
        "colours": 0.7 if colours else 0.0,
        "size": 0.5,
        "low_poly": 1.0,
        "animated": 1.0,
        "symmetric": 1.0 if mirrored else (0.8 if axes else 0.6),
    }
    row.category = choice.category
    row.labels = {
        "version": LABELLER_VERSION,
        "names": [
            {"text": text, "source": source, "confidence": NAME_CONFIDENCE[source]}
            for source, text in found.items()
            if text
        ],
        "noun": noun,
        "category": {
            "name": choice.category,
            "confidence": choice.confidence,
            "similarity": choice.similarity,
            "runner_up": choice.runner_up,
        },
        "attributes": attrs,
        "attribute_confidence": attribute_confidence,
        "captions": attributes.captions(
            noun,
            choice.category,
            colours=colours,
            size=attrs["size"],
            low_poly=attrs["low_poly"],
            animated=attrs["animated"],
            symmetric=attrs["symmetric"],
            modifiers=[m for m in modifiers if m != "ARMATURE"],
        ),
    }
