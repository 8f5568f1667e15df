"""Material tokens: the graph at the grid round-trips (material -> graph -> tokens -> graph ->
material -> graph) for every material of real extracted corpus files (and of the full material
dataset where this machine has it), the grammar refuses what Blender could not build, and
grammar walks stay within their budgets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from shared.ml.material_tokens import (
    BOS,
    EOS,
    FLOAT_GRID,
    MaterialGrammar,
    MaterialTokenError,
    canonical_graph,
    decode,
    dequantise,
    encode,
    graph_to_material,
    linear_to_oklab,
    node_specs,
    oklab_to_linear,
    quantise,
    summarise,
    vocabulary,
)
from shared.scene.models import Material
from tests.material_support import extracted_materials

FULL_DATASET = Path(os.environ.get("BMT_MATERIAL_DATASET", "/work/datasets/material"))


def assert_round_trip(material: dict, groups: list[dict]) -> int:
    graph = canonical_graph(material, groups)
    tokens = encode(graph)
    assert tokens[0] == BOS and tokens[-1] == EOS
    assert decode(tokens) == graph
    generated = graph_to_material(graph, material["name"])
    Material.model_validate(generated)  # a document of the scene format
    assert canonical_graph(generated) == graph
    return len(graph)


@pytest.fixture(scope="module")
def corpus_materials(tmp_path_factory) -> list[tuple[dict, list[dict]]]:
    items = extracted_materials(tmp_path_factory)
    return [
        ({"name": it["material"], "pbr": it["pbr"], "node_tree": it["node_tree"]}, it["node_groups"])
        for it in items
    ]


def test_every_material_of_the_corpus_slice_round_trips(corpus_materials):
    assert len(corpus_materials) >= 20
    kinds = {n.key for m, g in corpus_materials for n in canonical_graph(m, g)}
    # the slice really holds the cases it was picked for
    assert {"ShaderNodeTexChecker", "ShaderNodeMix:RGBA", "ShaderNodeVertexColor"} <= kinds
    assert any(g for _, g in corpus_materials)
    for material, groups in corpus_materials:
        assert_round_trip(material, groups)


def test_every_material_of_the_full_dataset_round_trips():
    """Runs where the full dataset is on disk (the build machines); CI has the corpus slice above."""
    if not (FULL_DATASET / "manifest.json").is_file():
        pytest.skip(f"no material dataset at {FULL_DATASET} (set BMT_MATERIAL_DATASET)")
    from shared.ml.datasets import iter_split

    count = 0
    for split in ("train", "val", "test"):
        for item in iter_split(FULL_DATASET, split, "material"):
            material = {"name": item["material"], "pbr": item["pbr"], "node_tree": item["node_tree"]}
            assert_round_trip(material, item["node_groups"])
            count += 1
    assert count > 1000


def test_image_textures_are_left_out_and_their_socket_keeps_its_value(corpus_materials):
    textured = [
        (m, g)
        for m, g in corpus_materials
        if any(n["type"] == "ShaderNodeTexImage" for n in (m.get("node_tree") or {}).get("nodes", []))
    ]
    assert textured
    for material, groups in textured:
        generated = graph_to_material(canonical_graph(material, groups), "x")
        assert all(n["type"] != "ShaderNodeTexImage" for n in generated["node_tree"]["nodes"])
        assert all("image" not in n for n in generated["node_tree"]["nodes"])


def test_groups_are_flattened_through_their_interface():
    group = {
        "name": "Tint",
        "nodes": [
            {"name": "In", "type": "NodeGroupInput", "outputs": [{"identifier": "Socket_0"}]},
            {"name": "Out", "type": "NodeGroupOutput", "inputs": [{"identifier": "Socket_1"}]},
            {
                "name": "Diffuse",
                "type": "ShaderNodeBsdfDiffuse",
                "inputs": [{"identifier": "Color", "default": [0.8, 0.8, 0.8, 1]}],
            },
        ],
        "links": [
            {"from_node": "In", "from_socket": "Socket_0", "to_node": "Diffuse", "to_socket": "Color"},
            {"from_node": "Diffuse", "from_socket": "BSDF", "to_node": "Out", "to_socket": "Socket_1"},
        ],
    }
    material = {
        "name": "Grouped",
        "node_tree": {
            "name": "Grouped",
            "nodes": [
                {"name": "Output", "type": "ShaderNodeOutputMaterial"},
                {
                    "name": "G",
                    "type": "ShaderNodeGroup",
                    "node_tree": "Tint",
                    "inputs": [{"identifier": "Socket_0", "default": [1.0, 0.0, 0.0, 1.0]}],
                },
                {"name": "Reroute", "type": "NodeReroute"},
            ],
            "links": [
                {"from_node": "G", "from_socket": "Socket_1", "to_node": "Reroute", "to_socket": "Input"},
                {
                    "from_node": "Reroute",
                    "from_socket": "Output",
                    "to_node": "Output",
                    "to_socket": "Surface",
                },
            ],
        },
    }
    graph = canonical_graph(material, [group])
    assert [n.key for n in graph] == ["ShaderNodeOutputMaterial", "ShaderNodeBsdfDiffuse"]
    assert graph[0].links == {"Surface": (1, "BSDF")}
    red = dequantise(graph[1].values["Color"], "RGBA")
    assert red[0] > 0.9 and red[1] < 0.05 and red[2] < 0.05  # the group input's value moved inside


def test_a_material_without_a_linked_output_becomes_its_principled_summary():
    material = {
        "name": "Loose",
        "pbr": {"base_color": [0.0, 0.0, 1.0, 1.0], "metallic": 1.0},
        "node_tree": {
            "name": "Loose",
            "nodes": [{"name": "Output", "type": "ShaderNodeOutputMaterial"}],
            "links": [],
        },
    }
    graph = canonical_graph(material)
    assert [n.key for n in graph] == ["ShaderNodeOutputMaterial", "ShaderNodeBsdfPrincipled"]
    summary = summarise(graph)
    assert summary["metallic"] == 1.0 and summary["base_color"][2] > 0.9


def test_quantisation_is_idempotent_on_its_grids():
    rng = np.random.default_rng(0)
    for value in rng.uniform(-2000, 2000, 200).tolist() + [0.0, 0.5, 1.45, 1e9]:
        bins = quantise(value, "VALUE", 1)
        assert quantise(dequantise(bins, "VALUE"), "VALUE", 1) == bins
    for rgb in rng.uniform(0, 1, (200, 3)).tolist():
        bins = quantise(rgb, "RGBA", 3)
        assert quantise(dequantise(bins, "RGBA"), "RGBA", 3) == bins
    assert np.allclose(oklab_to_linear(linear_to_oklab([0.2, 0.5, 0.9])), [0.2, 0.5, 0.9])
    assert 0.0 in FLOAT_GRID and 1.0 in FLOAT_GRID and 1.45 in FLOAT_GRID


def random_walk(rng: np.random.Generator, max_tokens: int = 128, max_nodes: int = 48) -> MaterialGrammar:
    grammar = MaterialGrammar(max_tokens, max_nodes)
    while not grammar.done:
        grammar.feed(int(rng.choice(np.flatnonzero(grammar.allowed_mask()))))
    return grammar


def test_grammar_walks_end_within_budget_and_decode_to_the_same_graph():
    rng = np.random.default_rng(1)
    for budget, nodes in [(24, 48), (64, 4), (128, 48)] * 40:
        grammar = random_walk(rng, budget, nodes)
        assert len(grammar.tokens) <= budget and len(grammar.graph) <= nodes
        assert grammar.graph[0].key == "ShaderNodeOutputMaterial"
        assert {"Surface", "Volume"} & set(grammar.graph[0].links)
        assert decode(grammar.tokens) == grammar.graph
        Material.model_validate(graph_to_material(grammar.graph))


def test_grammar_refuses_what_blender_could_not_build():
    v = vocabulary()
    specs = node_specs()
    out = v.node["ShaderNodeOutputMaterial"]
    principled = v.node["ShaderNodeBsdfPrincipled"]
    with pytest.raises(MaterialTokenError, match="not allowed"):  # the root must be an output
        decode([BOS, principled, 3, EOS])
    with pytest.raises(MaterialTokenError, match="not allowed"):  # an output must be linked
        decode([BOS, out, 3, EOS])
    with pytest.raises(MaterialTokenError, match="not allowed"):  # a colour into a shader socket
        decode([BOS, out, v.input["Surface"], v.node["ShaderNodeRGB"]])
    with pytest.raises(MaterialTokenError, match="not allowed"):  # a shader into a colour socket
        decode(
            [
                BOS,
                out,
                v.input["Surface"],
                principled,
                v.output["BSDF"],
                v.input["Base Color"],
                v.node["ShaderNodeEmission"],
            ]
        )
    # a link back to the open output node would be a cycle: no reference to it exists
    grammar = MaterialGrammar()
    for token in [out, v.input["Surface"], principled, v.output["BSDF"], v.input["Base Color"]]:
        grammar.feed(token)
    assert not grammar.allowed_mask()[v.ref : v.ref + 2].any()
    with pytest.raises(MaterialTokenError, match="before EOS"):
        decode([BOS, out])
    assert "ShaderNodeBsdfPrincipled" in specs and "ShaderNodeMix:RGBA" in specs
