"""The n-gon tokenizer: exact round trips, canonical form, degenerate input, grammar, peer baselines."""

from __future__ import annotations

import numpy as np
import pytest

from shared.ml.baseline_tokenizers import amt_tokens, bpt_tokens, naive_tokens
from shared.ml.mesh_tokenizer import (
    BOS,
    EOS,
    MeshGrammar,
    TokenizerConfig,
    TokenizerError,
    Vocabulary,
    decode,
    encode,
    meshes_equal,
    quantize_mesh,
)
from shared.ml.synthetic_meshes import box, cylinder, merge, synthetic_items


def random_mesh(rng: np.random.Generator, max_face: int = 10) -> tuple[np.ndarray, list[list[int]]]:
    """A random polygon soup plus a strip of shared-edge quads: several components, mixed sizes."""
    n = int(rng.integers(4, 60))
    verts = rng.normal(size=(n, 3)) * rng.uniform(0.1, 10)
    faces = []
    for _ in range(int(rng.integers(1, 40))):
        size = int(rng.integers(3, min(max_face, n) + 1))
        faces.append([int(i) for i in rng.choice(n, size=size, replace=False)])
    grid = np.array([[x, y, 0.0] for y in range(3) for x in range(int(rng.integers(2, 6)))])
    w = len(grid) // 3
    strip = [
        [y * w + x, y * w + x + 1, (y + 1) * w + x + 1, (y + 1) * w + x]
        for y in range(2)
        for x in range(w - 1)
    ]
    return merge((verts, faces), (grid + 20, strip))


@pytest.mark.parametrize(
    "config", [TokenizerConfig(), TokenizerConfig(bits=5, max_ref=4, max_pop=2), TokenizerConfig(bits=8)]
)
def test_round_trip_is_exact_on_random_meshes(config):
    rng = np.random.default_rng(7)
    for _ in range(150):
        verts, faces = random_mesh(rng)
        q = quantize_mesh(verts, faces, config)
        tokens = encode(q, config)
        assert tokens[0] == BOS and tokens[-1] == EOS
        assert meshes_equal(decode(tokens, config), q)


def test_round_trip_on_synthetic_primitives_and_multiple_components():
    for item in synthetic_items(40, seed=3):
        q = quantize_mesh(item["mesh"]["vertices"], item["mesh"]["faces"])
        assert meshes_equal(decode(encode(q)), q), item["category"]
    two_boxes = merge(box(center=(0, 0, 0)), box(center=(3, 0, 0)))
    q = quantize_mesh(*two_boxes)
    assert len(q.faces) == 12 and len(q.vertices) == 16
    assert meshes_equal(decode(encode(q)), q)


def test_ngons_are_kept_and_oversized_ones_split():
    q = quantize_mesh(*cylinder(32))
    assert sorted(len(f) for f in q.faces) == [4] * 32 + [32, 32]
    assert meshes_equal(decode(encode(q)), q)
    config = TokenizerConfig(max_face_size=12)
    q = quantize_mesh(*cylinder(32), config)
    assert q.stats["faces_split"] == 2 and max(len(f) for f in q.faces) <= 12
    assert q.triangle_count == 32 * 2 + 2 * 30  # splitting keeps the surface
    assert meshes_equal(decode(encode(q, config), config), q)


def test_canonical_form_ignores_vertex_order_and_face_rotation():
    verts, faces = box()
    perm = np.random.default_rng(0).permutation(len(verts))
    inverse = np.argsort(perm)
    shuffled = [[int(inverse[v]) for v in f[1:] + f[:1]] for f in faces[::-1]]
    a, b = quantize_mesh(verts, faces), quantize_mesh(verts[perm], shuffled)
    assert meshes_equal(a, b) and encode(a) == encode(b)
    z = a.vertices[:, 2]
    assert (np.diff(z) >= 0).all()  # sorted by z first
    assert all(f[0] == min(f) for f in a.faces) and a.faces == sorted(a.faces)


def test_degenerate_input_is_merged_dropped_and_counted():
    verts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [1e-6, 0, 0], [0, 0, 1]], dtype=float)
    faces = [[0, 1, 2, 3], [0, 4, 1], [1, 2, 5], [0, 1, 2, 3], [0, 5, 0, 1]]
    q = quantize_mesh(verts, faces)
    assert q.stats["vertices_merged"] == 1  # vertex 4 lands on vertex 0
    assert q.stats["faces_collapsed"] == 2  # [0,4,1] collapses; [0,5,0,1] visits 0 twice
    assert q.stats["faces_duplicate"] == 1
    assert len(q.faces) == 2 and sorted(len(f) for f in q.faces) == [3, 4]
    assert meshes_equal(decode(encode(q)), q)


@pytest.mark.parametrize(
    ("vertices", "faces", "message"),
    [
        ([[0, 0, 0], [1, 0, 0], [np.nan, 0, 0]], [[0, 1, 2]], "NaN"),
        ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 3]], "out of range"),
        ([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1]], "fewer than 3"),
        ([[0, 0], [1, 0]], [], "shape"),
    ],
)
def test_bad_meshes_get_a_clear_error(vertices, faces, message):
    with pytest.raises(TokenizerError, match=message):
        quantize_mesh(vertices, faces)


def test_bad_configuration_and_mismatched_bits_are_refused():
    with pytest.raises(TokenizerError):
        TokenizerConfig(bits=7, offset_bits=7)
    q = quantize_mesh(*box(), TokenizerConfig(bits=6))
    with pytest.raises(TokenizerError, match="6 bits"):
        encode(q, TokenizerConfig())


def test_grammar_rejects_invalid_sequences():
    v = Vocabulary(TokenizerConfig())
    with pytest.raises(TokenizerError, match="not allowed"):
        decode([BOS, EOS])  # no face
    with pytest.raises(TokenizerError, match="not allowed"):
        decode([BOS, v.new(3), v.ref(0)])  # nothing to reference yet
    with pytest.raises(TokenizerError, match="not allowed"):
        decode([BOS, v.new(3), v.offset0])  # an offset needs a block first
    with pytest.raises(TokenizerError, match="not allowed"):
        decode([BOS, v.new(3), v.block0, v.offset0, v.offset0])  # same vertex twice in a face
    with pytest.raises(TokenizerError, match="not allowed"):
        decode([BOS, v.cont(0, 4, 0)])  # no anchor face
    triangle = [v.block0, v.offset0, v.offset0 + 1, v.offset0 + 2]
    grammar = MeshGrammar()
    for token in [v.new(3), *triangle, v.new(3), v.ref(2), v.ref(1)]:  # vertices 0 and 1 again
        grammar.feed(token)
    # Closing with vertex 2 would repeat face (0, 1, 2), by reference or by coordinates.
    assert not grammar.allowed_token(v.ref(0)) and not grammar.allowed_token(v.offset0 + 2)
    assert grammar.allowed_token(v.offset0 + 3)
    other_winding = decode([BOS, v.new(3), *triangle, v.new(3), v.ref(1), v.ref(1), v.ref(0), EOS])
    assert other_winding.faces == [(0, 1, 2), (0, 2, 1)]  # the same corners wound the other way
    tokens = encode(quantize_mesh(*box()))
    with pytest.raises(TokenizerError, match="before EOS"):
        decode(tokens[:-1])
    with pytest.raises(TokenizerError, match="not allowed"):
        decode(tokens[:5] + [EOS])  # EOS inside a face


def test_grammar_budgets_always_leave_a_way_to_finish():
    rng = np.random.default_rng(1)
    config = TokenizerConfig()
    for trial in range(30):
        grammar = MeshGrammar(
            config, face_budget=int(rng.integers(1, 6)), max_tokens=int(rng.integers(9, 60))
        )
        while not grammar.done:
            allowed = np.flatnonzero(grammar.allowed_mask())
            assert len(allowed), f"trial {trial}: stuck with nothing allowed"
            grammar.feed(int(rng.choice(allowed)))
        assert 1 <= len(grammar.faces) <= grammar.face_budget
        assert grammar.used <= grammar.max_tokens
        assert all(len(set(f)) == len(f) >= 3 for f in grammar.faces)
        assert len(grammar.mesh().faces) == len(grammar.faces)  # no face repeated


def test_token_descriptions_cover_every_range():
    v = Vocabulary(TokenizerConfig())
    assert v.describe(v.cont(2, 4, 1)) == "CONT_e2_s4_f1"
    assert v.describe(v.new(5)) == "NEW_5" and v.describe(v.pop(3)) == "POP_3"
    assert v.join(*v.split((5, 77, 127))) == (5, 77, 127)


def test_peer_baselines_count_tokens_as_their_papers_describe():
    points = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 2, 0]], float)
    strip = quantize_mesh(points, [[0, 1, 2], [2, 1, 3], [2, 3, 4]])
    assert naive_tokens(strip) == 27
    assert amt_tokens(strip) == 9 + 3 + 3  # one full face, then one new vertex per adjacent face
    # BPT: one patch around vertex 2 (2 tokens) and its ring 0-1-3-4, each in a new block (2 tokens).
    assert bpt_tokens(strip) == 2 + 4 * 2
    cube = quantize_mesh(*box())
    assert len(encode(cube)) - 2 < bpt_tokens(cube) < amt_tokens(cube) < naive_tokens(cube)
