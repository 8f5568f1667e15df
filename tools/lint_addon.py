"""Blender's own extension checks on the add-on, as ``blender --command extension validate`` and
``extension build`` run them, through the bpy module's copy of that command (no Blender binary
needed): the manifest in addon/, the zip Blender builds from it, and the zip ``make addon`` packs.

Usage: python -m tools.lint_addon; exit 1 with Blender's messages when a check fails.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.pack_addon import pack

REPO = Path(__file__).resolve().parents[1]


def blender_scripts() -> Path:
    """bpy/<version>/scripts of the installed bpy module, found without importing bpy (0.7 s)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise SystemExit("the bpy module is not installed; it carries Blender's extension validator")
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise SystemExit(f"no extension command (bl_pkg/cli/blender_ext.py) under {spec.origin}")
    return found[-1].parents[3]


def extension_command(args: list[str]) -> list[str]:
    """Run Blender's extension command with the tag list Blender itself validates against."""
    scripts = blender_scripts()
    tags = scripts / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    command = [sys.executable, str(scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py")]
    result = subprocess.run(
        [*command, args[0], f"--valid-tags={tags}", *args[1:]], capture_output=True, text=True
    )
    if result.returncode == 0:
        return []
    lines = (result.stdout + result.stderr).strip().splitlines()
    return [f"extension {args[0]}: {line}" for line in lines if line.strip()] or [
        f"extension {args[0]} failed"
    ]


def check(source: Path = REPO / "addon") -> list[str]:
    problems = extension_command(["validate", str(source)])
    if problems:
        return problems  # the build and the zip fail on the same manifest
    with tempfile.TemporaryDirectory() as tmp:
        problems += extension_command(["build", "--source-dir", str(source), "--output-dir", tmp])
        packed = pack(source, Path(tmp) / "packed")
        problems += extension_command(["validate", str(packed)])
    return problems


def main() -> int:
    problems = check()
    for problem in problems:
        print(problem)
    print("add-on extension checks: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
