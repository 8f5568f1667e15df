"""Render a scene document to a PNG: the add-on's injector builds it in an empty file, then the
extractor's preview renderer (Cycles on the CPU, framed camera, sun, grey world) draws it.

    python -m blender_worker.render_scene scene.json preview.png [--size 256] [--samples 16]
        [--blend scene.blend] [--uv-maps]

``--blend`` also saves the rendered file (with its camera and sun); ``--uv-maps`` unwraps meshes
that arrive without a UV map, as the add-on's Insert does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import bpy

from addon.injector import inject_scene
from blender_worker.preview import render_preview


def render(
    document: dict,
    out: Path,
    size: int = 256,
    samples: int = 16,
    blend: Path | None = None,
    uv_maps: bool = False,
) -> list[str]:
    """Inject ``document`` into an empty file and render it; return the injector's warnings."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = inject_scene(document, collection=bpy.context.scene.collection, add_uv_maps=uv_maps)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not render_preview(out, size=size, samples=samples):
        raise ValueError("the scene has nothing visible to render")
    if blend is not None:
        bpy.ops.wm.save_as_mainfile(filepath=str(blend.resolve()), check_existing=False)
    return result.warnings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", type=Path, help="scene document (JSON)")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--blend", type=Path, help="also save the rendered file here")
    parser.add_argument("--uv-maps", action="store_true", help="unwrap meshes without a UV map")
    args = parser.parse_args(argv)
    document = json.loads(args.scene.read_text())
    warnings = render(document, args.out.resolve(), args.size, args.samples, args.blend, args.uv_maps)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(args.out)


if __name__ == "__main__":
    main()
