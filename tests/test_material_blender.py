"""Material graphs in real Blender 5.0 (bpy): 1,000 grammar samples build through the add-on's
injector without a warning, every link valid (type-compatible, no cycle) and the output reached;
read back by the extractor they are the same graphs; a generated material lands in an object's
slots as a real node material."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest

from addon.injector import inject_scene
from blender_worker.scene_reader import ReadLimits, _Reader
from shared.ml.material_generator import MaterialGenerator
from shared.ml.material_tokens import canonical_graph, graph_to_material
from shared.ml.synthetic_materials import KINDS, synthetic_materials
from tests.addon_support import PYRAMID_FACES, PYRAMID_VERTICES, reset_blender
from tests.test_material_tokens import random_walk

CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "material" / "tiny" / "model.pt"
SAMPLES = 1000


@pytest.fixture(autouse=True)
def empty_file():
    reset_blender()
    yield
    reset_blender()


def scene(materials: list[dict], objects: list[dict] | None = None) -> dict:
    return {"schema_version": "1.0", "materials": materials, "objects": objects or []}


def test_a_thousand_grammar_samples_build_without_a_warning_and_read_back():
    rng = np.random.default_rng(7)
    graphs = [random_walk(rng, max_tokens=int(rng.choice([32, 96, 128]))).graph for _ in range(SAMPLES)]
    docs = [graph_to_material(g, f"Sample {i}") for i, g in enumerate(graphs)]
    result = inject_scene(scene(docs))
    assert result.warnings == []
    reader = _Reader(ReadLimits(max_vertices=10**6, max_faces=10**6))
    types = set()
    for i, (graph, doc) in enumerate(zip(graphs, docs, strict=True)):
        material = bpy.data.materials[result.names["materials"][doc["name"]]]
        tree = material.node_tree
        assert len(tree.nodes) == len(doc["node_tree"]["nodes"])
        assert len(tree.links) == len(doc["node_tree"]["links"])
        assert all(link.is_valid for link in tree.links), doc["name"]  # Blender marks cycles and bad types
        output = tree.nodes["Material Output"]
        assert output.inputs["Surface"].is_linked or output.inputs["Volume"].is_linked
        types |= {n.bl_idname for n in tree.nodes}
        if i % 5 == 0:  # the extractor reads back the same graph at the grid
            assert canonical_graph(reader._material(material)) == graph, doc["name"]
    assert len(types) > 30  # the walks reached most of the vocabulary


def test_synthetic_colour_word_materials_build_without_a_warning_and_read_back():
    items = synthetic_materials(2 * len(KINDS), seed=5)  # every kind twice
    graphs = [canonical_graph(item) for item in items]
    docs = [
        graph_to_material(g, f"{item['id']} {item['material']}")
        for g, item in zip(graphs, items, strict=True)
    ]
    result = inject_scene(scene(docs))
    assert result.warnings == []
    reader = _Reader(ReadLimits(max_vertices=10**6, max_faces=10**6))
    for graph, doc in zip(graphs, docs, strict=True):
        material = bpy.data.materials[result.names["materials"][doc["name"]]]
        assert all(link.is_valid for link in material.node_tree.links), doc["name"]
        assert material.node_tree.nodes["Material Output"].inputs["Surface"].is_linked
        assert canonical_graph(reader._material(material)) == graph, doc["name"]


def test_generated_materials_fill_an_objects_slots_as_node_materials():
    generator = MaterialGenerator(CHECKPOINT, device="cpu")
    requests = [
        {
            "prompt": "red painted wood",
            "noun": "chair",
            "category": "furniture",
            "size": [0.5, 0.5, 1.0],
            "slot": 0,
            "slots": 2,
        },
        {
            "prompt": "shiny metal",
            "noun": "chair",
            "category": "furniture",
            "size": [0.5, 0.5, 1.0],
            "slot": 1,
            "slots": 2,
            "seed": 3,
        },
    ]
    results = generator.run_many(requests)
    materials = [dict(r["material"], name=f"Chair {i}") for i, r in enumerate(results)]
    obj = {
        "name": "Chair",
        "mesh": {
            "name": "ChairMesh",
            "vertices": [v[:3] for v in PYRAMID_VERTICES],
            "faces": PYRAMID_FACES,
            "material_indices": [0, 1, 1, 1, 1, 1],
        },
        "material_slots": ["Chair 0", "Chair 1"],
    }
    result = inject_scene(scene(materials, [obj]))
    assert result.warnings == []
    (chair,) = result.objects
    assert [s.material.name for s in chair.material_slots] == [
        result.names["materials"][m["name"]] for m in materials
    ]
    for slot, doc in zip(chair.material_slots, materials, strict=True):
        tree = slot.material.node_tree
        assert {n.bl_idname for n in tree.nodes} == {n["type"] for n in doc["node_tree"]["nodes"]}
        assert tree.nodes["Material Output"].inputs["Surface"].is_linked
        assert all(link.is_valid for link in tree.links)
    assert [p.material_index for p in chair.data.polygons] == [0, 1, 1, 1, 1, 1]
