"""Render an injected scene with Cycles on the CPU through blender_worker.render_scene, and check
the picture shows the object in its material's colour over the grey world."""

from __future__ import annotations

import json

import bpy  # in CI a missing bpy fails the run: never importorskip
import pytest

from blender_worker.render_scene import main
from tests.addon_support import reset_blender, small_scene

SIZE = 64


def pixel(image, x: int, y: int) -> tuple[float, float, float]:
    start = (y * image.size[0] + x) * 4
    return tuple(image.pixels[start : start + 3])


@pytest.mark.slow
def test_render_preview_shows_the_injected_object(tmp_path, capsys):
    scene_file, png = tmp_path / "crate.json", tmp_path / "crate.png"
    scene_file.write_text(json.dumps(small_scene("Crate")))
    main([str(scene_file), str(png), "--size", str(SIZE), "--samples", "8"])
    assert capsys.readouterr().out.strip().endswith("crate.png")
    image = bpy.data.images.load(str(png))
    assert tuple(image.size) == (SIZE, SIZE)
    r, g, b = pixel(image, SIZE // 2, SIZE // 2)
    assert r > g > b and r > 0.3  # the orange PBR base colour, lit
    corner = pixel(image, 1, SIZE - 2)
    assert max(corner) - min(corner) < 0.05  # the grey world behind it
    reset_blender()
