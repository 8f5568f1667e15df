"""``make demo``'s scenes: prompts through the real gateway (in-process, embedded backends, a small
geometry model), each built, rendered and saved by Blender in a child process, one contact sheet."""

from __future__ import annotations

import json

import bpy

from services import demo
from tests.addon_support import reset_blender


def test_two_prompts_become_json_png_blend_a_contact_sheet_and_a_table(
    geometry_checkpoint, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("BMT_GEOMETRY_CHECKPOINT", str(geometry_checkpoint))
    demo.get_settings.cache_clear()
    monkeypatch.setattr(demo, "available_specialists", lambda: ["geometry"])
    rows = demo.make_scenes(tmp_path, ("a round table", "a sword"), face_budget=30, size=48, samples=2)
    assert [row["prompt"] for row in rows] == ["a round table", "a sword"]
    for row in rows:
        stem = tmp_path / f"{rows.index(row) + 1}-{'-'.join(row['prompt'].split())}"
        scene = json.loads(stem.with_suffix(".json").read_text())
        assert row["faces"] == len(scene["objects"][0]["mesh"]["faces"]) > 0
        assert set(row["seconds"]) == {"generation", "render"}
        assert stem.with_suffix(".png").stat().st_size > 0
        bpy.ops.wm.open_mainfile(filepath=str(stem.with_suffix(".blend")))
        meshes = [o for o in bpy.data.objects if o.type == "MESH"]
        assert len(meshes) == 1 and len(meshes[0].data.uv_layers) == 1  # saved as Insert makes it
    sheet = bpy.data.images.load(str(tmp_path / "contact_sheet.png"))
    assert sheet.size[0] > sheet.size[1] > 0  # two renders side by side
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["specialists"] == ["geometry"] and len(summary["scenes"]) == 2
    table = capsys.readouterr().out.splitlines()
    assert table[-3].split() == [
        "prompt",
        "faces",
        "materials",
        "modifiers",
        "actions",
        "generation",
        "s",
        "render",
        "s",
    ]
    assert table[-2].startswith("a round table") and table[-1].startswith("a sword")
    reset_blender()


def test_specialists_come_from_the_checkpoints_without_an_inference_module(tmp_path, monkeypatch):
    monkeypatch.setattr(demo.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("BMT_GEOMETRY_CHECKPOINT", str(tmp_path / "missing.pt"))
    demo.get_settings.cache_clear()
    committed = [name for name, path in demo.SPECIALIST_CHECKPOINTS.items() if (demo.REPO / path).is_file()]
    assert demo.available_specialists() == [name for name in committed if name != "geometry"]
    monkeypatch.setenv("BMT_GEOMETRY_CHECKPOINT", str(demo.REPO / demo.SPECIALIST_CHECKPOINTS["geometry"]))
    demo.get_settings.cache_clear()
    assert demo.available_specialists()[0] == "geometry"


def test_scene_counts_read_every_part_of_a_scene():
    scene = {
        "objects": [{"mesh": {"faces": [[0, 1, 2]] * 4}, "modifiers": [{}, {}]}, {"name": "Empty"}],
        "materials": [{}],
        "actions": [{}, {}, {}],
    }
    assert demo.scene_counts(scene) == {
        "objects": 2,
        "faces": 4,
        "materials": 1,
        "modifiers": 2,
        "actions": 3,
    }
