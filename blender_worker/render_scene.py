"""Render a scene document to a PNG: the add-on's injector builds it in an empty file, then the
extractor's preview renderer (Cycles on the CPU, framed camera, sun, grey world) draws it.

    python -m blender_worker.render_scene scene.json preview.png [--size 256] [--samples 16]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import bpy

from addon.injector import inject_scene
from blender_worker.preview import render_preview


def render(document: dict, out: Path, size: int = 256, samples: int = 16) -> list[str]:
    """Inject ``document`` into an empty file and render it; return the injector's warnings."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = inject_scene(document, collection=bpy.context.scene.collection)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not render_preview(out, size=size, samples=samples):
        raise ValueError("the scene has nothing visible to render")
    return result.warnings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", type=Path, help="scene document (JSON)")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args(argv)
    warnings = render(json.loads(args.scene.read_text()), args.out.resolve(), args.size, args.samples)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(args.out)


if __name__ == "__main__":
    main()
