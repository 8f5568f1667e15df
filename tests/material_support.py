"""Shared by the material tests: materials of real corpus files, extracted by the real extractor,
and a small material dataset folder (manifest + tar shards, the labeler's format) made of them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from services.labeler.dataset import canonical_json, material_captions, tar_bytes
from tests.extract_support import CORPUS, extract, load_document

# Corpus files whose materials cover the tokens' cases: glTF node groups and image textures
# (01_alpha_blend, 01_factors), Mix nodes and properties (01_factors, 19_sheen), vertex colours,
# a checker texture (collection_to_link), legacy materials (Alien, 4Cubes4Mats_248), furniture.
SLICE = [
    "blend/gltf_blender_io/scenes_01_alpha_blend.blend",
    "blend/gltf_blender_io/scenes_01_factors.blend",
    "blend/gltf_blender_io/scenes_19_sheen.blend",
    "blend/gltf_blender_io/scenes_24_vertex_colors.blend",
    "blend/gltf_blender_io/scenes_collection_to_link.blend",
    "blend/quaternius/Characters_and_Animals/Alien_Animated_-_April_2019/Alien.blend",
    "blend/assimp_testmodels/4Cubes4Mats_248.blend",
    "blend/quaternius/Home_and_Buildings/Furniture_Pack_-_March_2019/Chair.blend",
]


def extracted_materials(tmp_path_factory) -> list[dict]:
    """Material items (the labeler's material item fields) of every mesh slot in the slice,
    extracted once per test session."""
    cached = tmp_path_factory.getbasetemp() / "material-slice.json"
    if not cached.is_file():
        cached.write_text(json.dumps(_extract(tmp_path_factory.mktemp("material-slice"))))
    return json.loads(cached.read_text())


def _extract(out: Path) -> list[dict]:
    items = []
    for name, entry in sorted(extract([CORPUS / p for p in SLICE], out).items()):
        doc = load_document(entry)
        materials = {m["name"]: m for m in doc["materials"]}
        for obj in doc["objects"]:
            for slot in obj.get("material_slots") or []:
                material = materials.get(slot)
                if material is None:
                    continue
                items.append(
                    {
                        "id": hashlib.sha256(f"{name}/{obj['name']}/{slot}".encode()).hexdigest()[:16],
                        "asset_sha256": hashlib.sha256(name.encode()).hexdigest(),
                        "object": obj["name"],
                        "category": "furniture" if "Chair" in name else "prop",
                        "material": slot,
                        "captions": material_captions(material, obj["name"].lower()),
                        "pbr": material.get("pbr") or {},
                        "node_tree": material.get("node_tree"),
                        "source": material.get("source", "nodes"),
                        "node_groups": doc["node_groups"],
                        "license": "CC0-1.0",
                        "attribution": None,
                        "pack": name,
                    }
                )
    return items


def write_material_dataset(folder: Path, items: list[dict]) -> Path:
    """Every third item to val and test, the rest to train; one shard per split."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": items[::3] + items[1::3], "val": items[2::6], "test": items[5::6]}
    manifest: dict = {"specialist": "material", "name": "slice", "version": "test", "splits": {}}
    for split, members in splits.items():
        shard = tar_bytes([(f"{it['id']}.json", canonical_json(it)) for it in members])
        sha = hashlib.sha256(shard).hexdigest()
        (folder / sha).write_bytes(shard)
        manifest["splits"][split] = {"shards": [sha], "items": len(members)}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder
