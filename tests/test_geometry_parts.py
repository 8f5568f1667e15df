"""Structure-first geometry: decomposition invariants, layout grammar, part decoding, assembly,
the parts trainer (train, resume, export, load, generate) and load_generator's dispatch."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from services.trainer.__main__ import main as trainer_cli
from services.trainer.geometry import TrainConfig, export_model, train
from services.trainer.geometry_parts import decomposed_to_fit, decompositions, scaled_layout
from shared.inference import InProcessSpecialist, InvalidRequest, generator_path
from shared.ml.geometry_generator import GeometryGenerator, MeshRequest, load_generator
from shared.ml.geometry_model import GeometryModel
from shared.ml.layout_tokens import (
    PART_TOKENS,
    LayoutGrammar,
    LayoutVocabulary,
    decode_layout,
    descriptor,
    face_range,
    mirror_pairs,
    occupancy,
    symmetric_parts,
)
from shared.ml.mesh_tokenizer import EOS, TokenizerError, decode
from shared.ml.modifier_structure import MeshArrays, peel_mirror
from shared.ml.part_closing import signed_volume
from shared.ml.part_decomposition import (
    DecompositionConfig,
    concave_regions,
    decompose,
    quantize_box,
    unit_frame,
)
from shared.ml.parts_generator import PartsGenerator
from shared.ml.parts_model import (
    PartsModel,
    assemble,
    load_parts_model,
    mirrored,
    part_budgets,
    preset_configs,
    save_parts_checkpoint,
)
from shared.ml.synthetic_meshes import synthetic_items
from tests.geometry_helpers import SMALL, small_parts_config, write_dataset


def grid_sheet(n: int, z: float = 0.0, offset=(0.0, 0.0)) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """An n x n quad sheet: one connected piece of n*n faces."""
    xs = np.linspace(0, 1, n + 1)
    verts = np.array([(x + offset[0], y + offset[1], z + 0.1 * x * y) for y in xs for x in xs])
    faces = [
        (j * (n + 1) + i, j * (n + 1) + i + 1, (j + 1) * (n + 1) + i + 1, (j + 1) * (n + 1) + i)
        for j in range(n)
        for i in range(n)
    ]
    return verts, faces


def scattered_triangles(count: int, rng) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Many loose tiny triangles (leaves, say): each is its own component."""
    centres = rng.uniform(-1, 1, size=(count, 3))
    verts = np.concatenate([c + rng.normal(0, 0.01, size=(3, 3)) for c in centres])
    return verts, [(3 * k, 3 * k + 1, 3 * k + 2) for k in range(count)]


def check_decomposition(verts, faces, config: DecompositionConfig) -> None:
    d = decompose(verts, faces, config)
    covered = np.concatenate([p.faces for p in d.parts])
    assert sorted(covered.tolist()) == list(range(len(faces)))  # every face in exactly one part
    unit = unit_frame(np.asarray(verts, dtype=np.float64))
    for part in d.parts:
        corners = unit[[v for f in part.faces for v in faces[f]]]
        assert len(part.tokens) <= config.max_part_tokens
        assert decode(part.tokens, config.tokenizer).faces  # the tokens are the mesh tokenizer's
        lo, hi = part.centre - part.size / 2, part.centre + part.size / 2
        # The box is its faces' bounding box; a part that collapsed at the grid has nothing to
        # write, and its faces join the nearest part without moving that part's box.
        inside = ((corners >= lo - 1e-9) & (corners <= hi + 1e-9)).all(1)
        assert inside.all() or d.stats["empty_parts"]
    assert d.fits and len(d.parts) <= config.max_parts
    keys = [(*quantize_box(p.centre, p.size, 7)[0][::-1],) for p in d.parts]
    assert keys == sorted(keys)  # bottom first


def test_decomposition_covers_every_face_once_and_boxes_contain_their_parts():
    config = DecompositionConfig(max_part_tokens=120, target_parts=6)
    rng = np.random.default_rng(0)
    for item in synthetic_items(24, seed=3, split="train"):
        check_decomposition(item["mesh"]["vertices"], item["mesh"]["faces"], config)
    sheet = grid_sheet(12)  # 144 connected faces: must be cut to fit 120 tokens
    check_decomposition(*sheet, config)
    assert len(decompose(*sheet, config).parts) > 1
    leaves = scattered_triangles(40, rng)  # 40 components of one face: merged towards target_parts
    d = decompose(*leaves, config)
    assert d.stats["components"] == 40 and len(d.parts) <= 6
    check_decomposition(*leaves, config)


def test_a_mesh_too_dense_for_a_layout_is_decimated_until_its_parts_fit():
    """As the 24 dense buildings of ``full``: more tokens than max_parts parts can hold."""
    config = DecompositionConfig(max_part_tokens=200, target_parts=4, max_parts=4)
    sheet = grid_sheet(40)  # 1,600 quads, one piece: about 5,000 tokens against 4 x 200
    assert not decompose(*sheet, config).fits
    d, kept = decomposed_to_fit(*sheet, config)
    assert d.fits and 0 < kept < 0.2
    assert all(len(p.tokens) <= config.max_part_tokens for p in d.parts) and len(d.parts) <= 4
    boxes = np.array([[*(p.centre - p.size / 2), *(p.centre + p.size / 2)] for p in d.parts])
    assert np.allclose(boxes[:, :2].min(0), [-0.5, -0.5], atol=0.05)  # still the whole sheet
    assert np.allclose(boxes[:, 3:5].max(0), [0.5, 0.5], atol=0.05)
    small = grid_sheet(4)
    assert decomposed_to_fit(*small, config)[1] == 1.0  # a mesh that fits is kept as it is


def test_part_boxes_contain_their_part_exactly():
    verts, faces = grid_sheet(3)
    legs = [grid_sheet(2, z=-1.0, offset=(dx, dy)) for dx, dy in ((-2, -2), (2, 2))]
    for lv, lf in legs:
        faces = faces + [tuple(v + len(verts) for v in f) for f in lf]
        verts = np.concatenate([verts, lv])
    d = decompose(verts, faces, DecompositionConfig(min_part_faces=1))
    assert len(d.parts) == 3  # the top and two legs: the artist's loose pieces
    unit = unit_frame(verts)
    for part in d.parts:
        corners = unit[[v for f in part.faces for v in faces[f]]]
        np.testing.assert_allclose(corners.min(0), part.centre - part.size / 2, atol=1e-9)
        np.testing.assert_allclose(corners.max(0), part.centre + part.size / 2, atol=1e-9)


def box_on_box() -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """A small box standing on a large one, welded into one closed piece: the large box's top is a
    ring around the small box's foot, which meets it at concave 90-degree edges."""
    outer = [(0, 0), (4, 0), (4, 4), (0, 4)]
    inner = [(1, 1), (3, 1), (3, 3), (1, 3)]
    verts = np.array(
        [(x, y, 0) for x, y in outer]
        + [(x, y, 1) for x, y in outer]
        + [(x, y, 1) for x, y in inner]
        + [(x, y, 2) for x, y in inner],
        dtype=np.float64,
    )
    faces = [(0, 3, 2, 1), (12, 13, 14, 15)]  # large box's bottom, small box's top
    for i in range(4):
        j = (i + 1) % 4
        faces.append((i, j, 4 + j, 4 + i))  # large box's sides
        faces.append((4 + i, 4 + j, 8 + j, 8 + i))  # the ring
        faces.append((8 + i, 8 + j, 12 + j, 12 + i))  # small box's sides
    return verts, faces


def test_concave_creases_part_a_welded_piece_and_convex_ones_do_not():
    verts, faces = box_on_box()
    unit = unit_frame(verts)
    weld = np.arange(len(verts))
    labels = concave_regions(unit, faces, weld, 30.0)
    small = [1] + [2 + 3 * i + 2 for i in range(4)]  # the small box's top and sides
    assert len(set(labels)) == 2 and len({labels[k] for k in small}) == 1
    assert labels[0] != labels[1]
    assert len(set(concave_regions(unit, faces, weld, 95.0))) == 1  # 90-degree creases kept above 95
    d = decompose(verts, faces, DecompositionConfig(min_part_faces=1, concave_degrees=30.0))
    assert len(d.parts) == 2 and d.stats["components"] == 1 and d.stats["regions"] == 2
    assert len(decompose(verts, faces, DecompositionConfig(min_part_faces=1, concave_degrees=0.0)).parts) == 1


def test_every_constrained_layout_decode_is_valid_and_inside_the_unit_cube():
    vocab = LayoutVocabulary(bits=7, max_parts=6)
    rng = np.random.default_rng(1)
    for _ in range(50):
        grammar, tokens = LayoutGrammar(vocab), [1]
        while not grammar.done:
            allowed = np.flatnonzero(grammar.allowed_mask())
            token = int(rng.choice(allowed))
            grammar.feed(token)
            tokens.append(token)
        boxes = decode_layout(tokens, vocab)
        assert 1 <= len(boxes) <= 6 and len(tokens) == 2 + PART_TOKENS * len(boxes)
        for box in boxes:
            assert (box.centre - box.size / 2 >= -0.5 - 1e-9).all() and (
                box.centre + box.size / 2 <= 0.5 + 1e-9
            ).all()
    with pytest.raises(TokenizerError):
        LayoutGrammar(vocab).feed(EOS)  # a layout has at least one part
    with pytest.raises(TokenizerError):
        decode_layout([1, vocab.slot0], vocab)  # ended mid-part


def test_layout_round_trips_and_augmented_layouts_stay_valid():
    vocab = LayoutVocabulary()
    item = synthetic_items(8, seed=0, split="train")[5]  # a table: five parts
    d = decompose(item["mesh"]["vertices"], item["mesh"]["faces"])
    boxes = [(*quantize_box(p.centre, p.size, 7), descriptor(p.face_count)) for p in d.parts]
    decoded = decode_layout(vocab.encode(boxes), vocab)
    for (q_centre, q_size, desc), box in zip(boxes, decoded, strict=True):
        requantized = quantize_box(box.centre, box.size, 7)
        assert (
            (requantized[0] == q_centre).all() and (requantized[1] == q_size).all() and box.descriptor == desc
        )
    parts = [{"centre": c, "size": s, "descriptor": k} for c, s, k in boxes]
    for factors in ([0.5, 1.0, 1.0], [1.25, 0.75, 1.1]):
        decode_layout(vocab.encode(scaled_layout(parts, np.array(factors), 7)), vocab)  # raises if invalid
    assert occupancy(decoded).max() <= 1.0 and occupancy(decoded).sum() > 0


def test_face_ranges_and_part_budgets():
    assert [descriptor(n) for n in (1, 2, 3, 4, 127, 128, 5000)] == [0, 1, 1, 2, 6, 7, 7]
    assert face_range(0) == (1, 1) and face_range(3) == (8, 15) and face_range(7) == (128, 0)
    vocab = LayoutVocabulary()
    layout = [vocab.dequantize([64, 64, 64, 10, 10, 10, d]) for d in (3, 7)]
    budgets = part_budgets(layout, face_budget=100)
    assert sum(b for _, b in budgets) <= 100 and all(lo <= b for lo, b in budgets)


def small_parts_model(seed: int = 0) -> PartsModel:
    torch.manual_seed(seed)
    structure, part, decomposition = preset_configs("tiny", SMALL, {**SMALL, "max_tokens": 48})
    return PartsModel(GeometryModel(structure), GeometryModel(part), decomposition)


def test_untrained_parts_model_assembles_valid_objects_inside_the_unit_cube():
    model = small_parts_model()
    texts = torch.randn(3, 384)
    generators = [torch.Generator().manual_seed(s) for s in range(3)]
    objects = model.generate_batch(texts, face_budget=[3, 6, 12], temperature=1.2, generator=generators)
    for obj, budget in zip(objects, [3, 6, 12], strict=True):
        assert 1 <= len(obj.layout) <= budget and len(obj.parts) == len(obj.layout)
        assert 1 <= len(obj.faces) <= budget
        assert np.abs(obj.vertices).max() <= 0.5 + 1e-9 and np.isclose(np.ptp(obj.vertices, 0).max(), 1.0)
        assert all(0 <= v < len(obj.vertices) for f in obj.faces for v in f)
        assert all(len(set(f)) == len(f) >= 3 for f in obj.faces)
    again = model.generate_batch(
        texts[1:2], face_budget=6, temperature=1.2, generator=[torch.Generator().manual_seed(1)]
    )
    assert again[0].faces == objects[1].faces  # a row's object does not depend on its batch


def test_assemble_stretches_each_part_onto_its_box():
    vocab = LayoutVocabulary()
    item = synthetic_items(1, seed=0, split="train")[0]  # a box
    d = decompose(item["mesh"]["vertices"], item["mesh"]["faces"])
    mesh = decode(d.parts[0].tokens)
    layout = [vocab.dequantize([32, 64, 64, 40, 20, 10, 2]), vocab.dequantize([96, 64, 64, 40, 20, 10, 2])]
    obj = assemble(layout, [mesh, mesh], tokens=0)
    assert len(obj.faces) == 2 * len(mesh.faces)
    assert np.isclose(np.ptp(obj.vertices[:, 0]), 1.0)  # the longest side of the union is 1
    assert obj.manifold_edge_share() == 1.0  # two closed boxes


def test_mirror_pairs_are_alike_boxes_mirrored_across_the_layouts_middle_in_x():
    vocab = LayoutVocabulary()
    seat, left, right = ([64, 64, 70, 80, 50, 10, 4], [30, 64, 40, 8, 8, 50, 2], [98, 65, 40, 9, 8, 50, 2])
    layout = [vocab.dequantize(box) for box in (seat, left, right)]
    assert mirror_pairs(layout) == {2: 1}  # the legs; the seat sits on the plane
    assert mirror_pairs(layout[::-1]) == {1: 0}
    for change in ({6: 3}, {3: 16}, {2: 48}):  # another descriptor, a wider box, another height
        other = [*right]
        for slot, value in change.items():
            other[slot] = value
        assert mirror_pairs([layout[0], layout[1], vocab.dequantize(other)]) == {}


def test_a_mirrored_part_is_its_pairs_mesh_reflected_and_not_written_again():
    item = synthetic_items(1, seed=0, split="train")[0]  # a box
    box = decode(decompose(item["mesh"]["vertices"], item["mesh"]["faces"]).parts[0].tokens)
    reflected = mirrored(box)
    top = (1 << box.bits) - 1
    assert sorted(map(tuple, reflected.vertices.tolist())) == sorted(
        (top - x, y, z) for x, y, z in box.vertices.tolist()
    )
    assert (
        signed_volume(reflected.unit_vertices(), reflected.faces)
        > 0
        < signed_volume(box.unit_vertices(), box.faces)
    )

    vocab = LayoutVocabulary()
    layout = [
        vocab.dequantize(b)
        for b in ([64, 64, 70, 80, 50, 10, 4], [30, 64, 40, 8, 8, 50, 3], [98, 64, 40, 8, 8, 50, 3])
    ]
    model = small_parts_model()
    text = torch.randn(1, 384)
    objects = {}
    for mirror in (True, False):
        model.mirror = mirror
        objects[mirror] = model.write_parts(
            text, [layout], [60], 1.2, 0.95, [torch.Generator().manual_seed(3)], [0]
        )[0]
    pair, apart = objects[True], objects[False]
    assert pair.parts[2].vertices.tolist() == mirrored(pair.parts[1]).vertices.tolist()
    assert apart.parts[2].vertices.tolist() != mirrored(apart.parts[1]).vertices.tolist()
    # The same seeds: the parts written in both are the same; the copy costs no tokens.
    assert [p.vertices.tolist() for p in pair.parts[:2]] == [p.vertices.tolist() for p in apart.parts[:2]]
    assert pair.tokens < apart.tokens


def test_a_symmetric_layout_gives_an_object_a_mirror_modifier_rebuilds_from_one_half():
    """Seat on the plane and a mirrored pair of legs: the object is its own reflection across
    x = 0 with no face across the plane (the seat is its low half joined to its reflection), so
    the modifier specialist's detector peels a Mirror; an extra part off the plane, unpaired,
    leaves the object as written."""
    vocab = LayoutVocabulary()
    seat, left, right, lone = (
        [64, 64, 70, 80, 50, 10, 4],
        [30, 64, 40, 8, 8, 50, 3],
        [98, 64, 40, 8, 8, 50, 3],
        [90, 30, 90, 10, 10, 10, 2],
    )
    symmetric = [vocab.dequantize(b) for b in (seat, left, right)]
    assert symmetric_parts(symmetric, mirror_pairs(symmetric)) == [0]
    lopsided = symmetric + [vocab.dequantize(lone)]
    assert symmetric_parts(lopsided, mirror_pairs(lopsided)) is None
    assert symmetric_parts(symmetric[:1], {}) is None  # one part on the plane: nothing says symmetric
    assert symmetric_parts([symmetric[0], symmetric[0]], {}) == [0, 1]  # parts stacked on the plane
    model = small_parts_model()
    for seed in range(4):
        objects = model.write_parts(
            torch.randn(3, 384),
            [symmetric, lopsided, symmetric],
            [400, 400, 40],
            1.2,
            0.95,
            [torch.Generator().manual_seed(seed) for _ in range(3)],
            [0, 0, 0],
        )
        chair, other, tight = objects
        assert len(chair.faces) <= 400 and len(tight.faces) <= 40  # symmetric only within the budget
        mesh = MeshArrays(chair.vertices, [list(f) for f in chair.faces]).welded()
        found = peel_mirror(mesh, 0)
        assert not isinstance(found, str), found
        assert np.isclose(found[1], 0.0, atol=1e-9)  # the plane is the object's middle
        assert isinstance(peel_mirror(MeshArrays(other.vertices, [list(f) for f in other.faces]), 0), str)


def test_closing_parts_keeps_the_face_budget_and_closes_what_it_may(tmp_path):
    """Closing is the checkpoint's choice (``close_parts``); the same seeds give the same layout
    and parts, closed where each part's face limit allows a hull or a box."""
    model = small_parts_model()
    save_parts_checkpoint(
        tmp_path / "open.pt", model.structure, model.part, model.decomposition, close_parts=False
    )
    save_parts_checkpoint(tmp_path / "closed.pt", model.structure, model.part, model.decomposition)
    as_written, closed = (load_parts_model(tmp_path / name)[0] for name in ("open.pt", "closed.pt"))
    assert not as_written.close_parts and closed.close_parts  # closing is the default for new files
    texts, budgets = torch.randn(3, 384), [40, 80, 160]
    objects = {
        name: m.generate_batch(
            texts,
            face_budget=budgets,
            temperature=1.2,
            generator=[torch.Generator().manual_seed(s) for s in range(3)],
        )
        for name, m in (("open", as_written), ("closed", closed))
    }
    for before, after, budget in zip(objects["open"], objects["closed"], budgets, strict=True):
        assert [b.centre.tolist() for b in before.layout] == [b.centre.tolist() for b in after.layout]
        assert len(after.faces) <= budget
        assert after.manifold_edge_share() >= before.manifold_edge_share()
    few_parts = objects["closed"][2]  # 11 parts sharing 160 faces: most may be closed
    assert few_parts.manifold_edge_share() > 0.5 > objects["open"][2].manifold_edge_share()


def test_layout_guidance_is_the_checkpoints_setting_and_steers_only_the_layouts(tmp_path):
    """A parts file carries its structure model's guidance scale (1, none, for files without the
    key); guided layouts differ from plain ones from the same seeds, and stay valid."""
    model = small_parts_model(2)
    save_parts_checkpoint(tmp_path / "plain.pt", model.structure, model.part, model.decomposition)
    save_parts_checkpoint(
        tmp_path / "guided.pt", model.structure, model.part, model.decomposition, layout_guidance=3.0
    )
    plain, guided = (load_parts_model(tmp_path / name)[0] for name in ("plain.pt", "guided.pt"))
    assert plain.layout_guidance == 1.0 and guided.layout_guidance == 3.0
    texts = torch.randn(4, 384)
    layouts = {
        name: [
            [b.centre.tolist() for b in obj.layout]
            for obj in m.generate_batch(
                texts,
                face_budget=12,
                temperature=0.8,
                generator=[torch.Generator().manual_seed(s) for s in range(4)],
            )
        ]
        for name, m in (("plain", plain), ("guided", guided))
    }
    assert layouts["plain"] != layouts["guided"]
    assert all(np.abs(np.array(c)).max() <= 0.5 for layout in layouts["guided"] for c in layout)
    for absurd in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="layout_guidance must be"):
            PartsModel(model.structure, model.part, model.decomposition, layout_guidance=absurd)


@pytest.fixture
def small_dataset(tmp_path):
    items = {
        split: [{**it, "category": "furniture"} for it in synthetic_items(n, seed=0, split=split)]
        for split, n in (("train", 24), ("val", 8), ("test", 8))
    }
    write_dataset(tmp_path / "ds", items)
    return str(tmp_path / "ds")


def test_parts_training_resumes_exports_one_file_and_generates(tmp_path, small_dataset):
    config = small_parts_config(small_dataset, tmp_path / "run", max_steps=4)
    shares: list[float] = []
    first = train(config, progress=lambda share, _message: shares.append(share))
    assert first["structure"]["result"]["steps"] == 4 and first["part"]["result"]["steps"] == 4
    assert shares == sorted(shares) and shares[-1] == 1.0
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["model_kind"] == "parts" and record["dataset"]["name"] == "test-geometry"
    assert record["structure"]["items"]["train"] == 24 and record["part"]["skipped_too_long"]["train"] == 0
    assert record["result"]["minutes_trained"] > 0
    cached = list((tmp_path / "var" / "cache" / "parts").glob("train-*.pkl"))
    assert len(cached) == 1  # decomposed once, read back by later runs
    config.max_steps, config.resume = 6, True
    second = train(config)
    assert second["structure"]["result"]["steps_this_session"] == 2
    assert second["part"]["result"]["steps"] == 6
    exported = export_model(tmp_path / "run", tmp_path / "model.pt")
    assert exported["step"] == {"structure": 6, "part": 6}
    trainer_cli(
        [
            "export",
            "--run-dir",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "guided.pt"),
            "--layout-guidance",
            "2",
        ]
    )
    assert load_parts_model(tmp_path / "guided.pt")[0].layout_guidance == 2.0
    generator = load_generator(tmp_path / "model.pt")
    assert isinstance(generator, PartsGenerator) and generator.meta["model_kind"] == "parts"
    requests = [MeshRequest("a table", face_budget=40, seed=s) for s in range(2)]
    out = generator.generate_many(requests)
    for mesh in out:
        v = np.array(mesh["vertices"])
        assert mesh["faces"] and mesh["parts"] >= 1 and mesh["tokens"] > 0 and mesh["seconds"] >= 0
        assert len(mesh["faces"]) <= 40 and np.abs(v).max() <= 1.0 + 1e-6  # metres, within 2 m
    assert generator.generate("a table", face_budget=40, seed=1)["faces"] == out[1]["faces"]
    with pytest.raises(ValueError, match="empty"):
        generator.generate("  ")
    # A later session without the run folder fine-tunes from the exported file, each model from its own.
    tuned = train(
        replace(
            config,
            run_dir=str(tmp_path / "tuned"),
            resume=False,
            max_steps=2,
            init_from=str(tmp_path / "model.pt"),
        )
    )
    for name in ("structure", "part"):
        assert tuned[name]["initialised_from"]["step"] == 6 and tuned[name]["result"]["steps"] == 2
    # Only the part model fine-tuned: the export takes the structure model from the file it started from.
    only_part = replace(
        config, run_dir=str(tmp_path / "part-only"), resume=False, max_steps=2, stages=("part",)
    )
    tuned = train(replace(only_part, init_from=str(tmp_path / "model.pt"), dropout=0.3))
    assert tuned["part"]["model_config"]["dropout"] == 0.3  # the file's was 0.0: a fine-tune may set its own
    exported = export_model(tmp_path / "part-only", tmp_path / "part-only.pt")
    assert exported["step"] == {"structure": 6, "part": 2}
    both = torch.load(tmp_path / "part-only.pt", weights_only=False)
    start = torch.load(tmp_path / "model.pt", weights_only=False)
    assert all(
        torch.equal(both["structure"]["state_dict"][k], v)
        for k, v in start["structure"]["state_dict"].items()
    )
    assert both["run"]["structure"] == start["run"]["structure"] and both["run"]["result"]["part_steps"] == 2
    start["step"]["part"] = 5  # the starting file was replaced since: its structure model may not be the one
    torch.save(start, tmp_path / "model.pt")
    with pytest.raises(ValueError, match="no longer the checkpoint"):
        export_model(tmp_path / "part-only", tmp_path / "again.pt")
    # A structure model from scratch (condition dropout, for guidance) completed by a shipped file's part model.
    scratch = replace(
        config,
        run_dir=str(tmp_path / "structure-only"),
        resume=False,
        max_steps=2,
        stages=("structure",),
        condition_dropout=0.2,
    )
    assert train(scratch)["structure"]["train_config"]["condition_dropout"] == 0.2
    with pytest.raises(FileNotFoundError, match="started from no checkpoint"):
        export_model(tmp_path / "structure-only", tmp_path / "alone.pt")
    with pytest.raises(ValueError, match="not a parts checkpoint"):
        export_model(
            tmp_path / "structure-only",
            tmp_path / "alone.pt",
            untrained_from=tmp_path / "run" / "part" / "best.pt",
        )
    combined = export_model(
        tmp_path / "structure-only",
        tmp_path / "combined.pt",
        layout_guidance=2.0,
        untrained_from=tmp_path / "part-only.pt",
    )
    assert combined["step"] == {"structure": 2, "part": 2}
    model, ckpt = load_parts_model(tmp_path / "combined.pt")
    assert model.layout_guidance == 2.0 and ckpt["run"]["part"] == both["run"]["part"]


def test_parts_resume_without_a_checkpoint_is_refused(tmp_path, small_dataset):
    config = TrainConfig(model="parts", dataset=small_dataset, run_dir=str(tmp_path / "none"), resume=True)
    with pytest.raises(FileNotFoundError, match="--resume"):
        train(config)
    with pytest.raises(ValueError, match="model must be"):
        train(TrainConfig(model="voxels"))


def test_decompositions_are_cached_by_dataset_split_and_rule(tmp_path, small_dataset):
    first = decompositions(small_dataset, "val", DecompositionConfig())
    again = decompositions(small_dataset, "val", DecompositionConfig())
    assert [len(o["parts"]) for o in first] == [len(o["parts"]) for o in again]
    decompositions(small_dataset, "val", DecompositionConfig(target_parts=2))
    assert len(list((tmp_path / "var" / "cache" / "parts").glob("val-*.pkl"))) == 2
    # `decompose` fills the cache a training run on another machine reads (tools/gpu-runs.sh).
    trainer_cli(["decompose", "--dataset", small_dataset, "--preset", "small", "--workers", "1"])
    assert len(list((tmp_path / "var" / "cache" / "parts").glob("train-*.pkl"))) == 1
    rule = preset_configs("small")[2]
    cached = decompositions(small_dataset, "train", rule)
    assert len(cached) == 24 and rule == preset_configs("tiny")[2]  # small keeps tiny's decomposition


def test_load_generator_dispatches_on_model_kind(tmp_path):
    from pathlib import Path

    flat = Path(__file__).resolve().parents[1] / "models" / "geometry" / "tiny" / "model.pt"
    assert isinstance(load_generator(flat), GeometryGenerator)
    torch.save({"model_kind": "voxels"}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="unknown model_kind"):
        load_generator(tmp_path / "odd.pt")


def test_a_parts_checkpoint_is_served_through_the_specialists_interface(tmp_path):
    """The gateway's in-process backend and Triton's model (shared.inference.generator_path) build a
    geometry generator by the file's model_kind, so an operator serves a parts checkpoint by naming
    it (BMT_GEOMETRY_CHECKPOINT), with the same requests and results as the flat model."""
    model = small_parts_model()
    save_parts_checkpoint(tmp_path / "parts.pt", model.structure, model.part, model.decomposition, half=True)
    assert generator_path("geometry") == "shared.ml.geometry_generator:load_generator"
    assert generator_path("material") == "shared.ml.material_generator:MaterialGenerator"
    specialist = InProcessSpecialist("geometry", tmp_path / "parts.pt")
    out = specialist.run_many([{"prompt": "a table", "face_budget": 30, "seed": 3}], timeout_s=120)
    assert isinstance(specialist.generator(), PartsGenerator)
    assert out[0]["faces"] and out[0]["parts"] >= 1 and len(out[0]["faces"]) <= 30
    with pytest.raises(InvalidRequest, match="geometry request 0"):
        specialist.run_many([{"prompt": "a table", "colour": "red"}], timeout_s=120)


def test_train_geometry_task_trains_and_exports_a_parts_model():
    from shared.db import ensure_schema, session_scope
    from shared.db.models import Job, RunStatus, TrainingRun
    from shared.queue import submit

    ensure_schema()
    job = submit("train.geometry", preset="tiny", max_steps=1, max_minutes=5, model="parts")
    with session_scope() as session:
        result = session.get(Job, job).result
        run = session.query(TrainingRun).one()
        assert run.status == RunStatus.SUCCEEDED and run.config["model"] == "parts"
        assert run.metrics["structure_steps"] == run.metrics["part_steps"] == 1
    assert "parts-tiny" in result["run_dir"]
    assert isinstance(load_generator(f"{result['run_dir']}/model.pt"), PartsGenerator)
    again = submit("train.geometry", preset="tiny", max_steps=1, max_minutes=5, model="parts")
    with session_scope() as session:
        assert session.get(Job, again).result["run_dir"] == result["run_dir"]
        assert session.query(TrainingRun).count() == 1  # the finished run was not trained again
