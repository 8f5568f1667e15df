"""Procedural colour-word materials for the material trainer: deterministic per seed, every word of
the palette and of the material words, colours and properties as the words name them, graphs at
the grid that round-trip through the tokens, and never a noun of the evaluation's prompts."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from services.trainer.material import delta_e, item_noun, material_examples, prompt_variants
from shared.colour_names import NAMED_COLOURS, PALETTE
from shared.ml.material_tokens import (
    canonical_graph,
    decode,
    graph_to_material,
    linear_to_oklab,
    oklab_to_linear,
    summarise,
)
from shared.ml.synthetic_materials import KINDS, NOUNS, WORDS, synthetic_materials

REPO = Path(__file__).resolve().parents[1]
EVALUATION = json.loads((REPO / "services" / "trainer" / "colour_prompts.json").read_text())


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text))


def test_synthetic_materials_are_deterministic_per_seed():
    first, again, other = (
        synthetic_materials(60, seed=3),
        synthetic_materials(60, seed=3),
        synthetic_materials(60, 4),
    )
    assert first == again
    assert first != other
    assert len({item["object"] for item in first}) == 60  # one object each: no slots shared


def test_every_word_is_covered_with_the_colour_or_property_it_names():
    assert set(KINDS) == {*PALETTE, "gold", "silver", "wooden", "glass", "glowing"}
    evaluated = {*EVALUATION["colours"], *EVALUATION["properties"]}
    assert evaluated <= {w for kind in KINDS for w in WORDS[kind]}  # every evaluation word is taught
    items = synthetic_materials(len(KINDS) * 12, seed=0)
    by_kind = defaultdict(list)
    for item in items:
        by_kind[item["kind"]].append(item)
    assert set(by_kind) == set(KINDS)
    for kind, members in by_kind.items():
        pbrs = [summarise(canonical_graph(item)) for item in members]
        for item in members:  # the word is in every caption
            assert all(words_of(c) & set(WORDS[kind]) for c in item["captions"]), item["captions"]
        if kind == "glass":
            assert all(p["transmission"] == 1.0 and p["roughness"] <= 0.1 for p in pbrs)
        elif kind == "glowing":
            assert all(p["emission_strength"] > 0 and max(p["emission_color"][:3]) > 0.05 for p in pbrs)
        else:
            centre = oklab_to_linear(np.mean([linear_to_oklab(p["base_color"][:3]) for p in pbrs], 0))
            assert delta_e(centre, NAMED_COLOURS[kind]) < 4, kind  # the grid's step is up to 3
            assert max(delta_e(p["base_color"], NAMED_COLOURS[kind]) for p in pbrs) < 15, kind
            assert all(p["metallic"] == 1.0 for p in pbrs) == (kind in ("gold", "silver"))


def test_no_synthetic_prompt_uses_a_noun_of_the_evaluation():
    evaluation_nouns = {noun for noun, _ in EVALUATION["nouns"]}
    assert not any(words_of(noun) & evaluation_nouns for noun, _ in NOUNS)
    evaluation_prompts = {
        f"{word} {noun}"
        for word in [*EVALUATION["colours"], *EVALUATION["properties"]]
        for noun in evaluation_nouns
    }
    for item in synthetic_materials(600, seed=1):
        prompts = prompt_variants(item["captions"], item_noun(item))
        assert not any(words_of(p) & evaluation_nouns for p in prompts), prompts
        assert not set(prompts) & evaluation_prompts


def test_synthetic_graphs_round_trip_through_the_tokens_like_the_corpus_materials():
    items = synthetic_materials(len(KINDS) * 3, seed=2)
    for example in material_examples(items, sizes={}):
        graph = example["graph"]
        assert decode(example["tokens"]) == graph
        assert canonical_graph(graph_to_material(graph)) == graph
        assert [n.key for n in graph] == ["ShaderNodeOutputMaterial", "ShaderNodeBsdfPrincipled"]
        assert example["object_text"].split(",")[0] in {noun for noun, _ in NOUNS}


def test_roughness_and_metallic_leave_the_corpus_defaults_only_where_the_words_say_so():
    """The corpus's materials without a finish word are matte-ish dielectrics (roughness about 0.5,
    metallic 0 or 0.4): a synthetic material that moved them unprompted would teach the model to
    make shiny metal of a plain "yellow" prompt, and a silver that was not called metallic taught
    it to make metal of "white"."""
    for item in synthetic_materials(len(KINDS) * 20, seed=6):
        pbr = summarise(canonical_graph(item))
        said = words_of(item["captions"][0])
        if item["kind"] in ("gold", "silver"):
            assert pbr["metallic"] == 1.0 and 0.15 <= pbr["roughness"] <= 0.45
            assert "metallic" in said, item["captions"]  # as the labeller says it; else white = silver
        elif item["kind"] == "glass":
            assert pbr["metallic"] == 0.0 and pbr["roughness"] <= 0.1
        else:
            assert pbr["metallic"] == 0.0, item["captions"]
            expected = "glossy" if pbr["roughness"] < 0.25 else "rough" if pbr["roughness"] > 0.75 else None
            assert pbr["roughness"] == 0.5 or expected in said, item["captions"]
            assert not {"glossy", "rough"} & said or expected in said, item["captions"]
