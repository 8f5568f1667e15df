"""Load one checked input into bpy, safely: auto-execution off, UI not loaded, nothing run.

.blend files are opened directly; files bpy 5.0 refuses (big-endian) are resaved first by an older
Blender when one is installed. Other formats go through Blender's importers into an empty scene;
ASCII FBX, which Blender's importer refuses, is converted to glTF by assimp first.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import bpy

from blender_worker.precheck import CheckedInput, RejectedInput

CONVERTER_TIMEOUT_S = 120
# Resave in an old Blender: its own loading runs with auto-execution disabled (-Y).
LEGACY_RESAVE = (
    "import bpy, sys; bpy.ops.wm.save_as_mainfile(filepath=sys.argv[-1], compress=False, copy=True)"
)


def disable_auto_exec() -> None:
    """Blender runs registered text blocks and Python driver expressions only when this is on."""
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False


def load(checked: CheckedInput, *, assimp: str, legacy_blender: str) -> None:
    """Replace bpy's current data with the input's; RejectedInput if Blender refuses it."""
    disable_auto_exec()
    if checked.format == "blend":
        if checked.big_endian:
            with tempfile.TemporaryDirectory(prefix="bmt-legacy-") as tmp:
                converted = _resave_with_legacy_blender(checked.path, Path(tmp), legacy_blender)
                _open_blend(converted)
        else:
            _open_blend(checked.path)
        return
    _reset_to_empty()
    if checked.ascii_fbx:
        with tempfile.TemporaryDirectory(prefix="bmt-fbx-") as tmp:
            converted = _convert_ascii_fbx(checked.path, Path(tmp), assimp)
            _import("gltf", converted)
    else:
        _import(checked.format, checked.path)
    if not bpy.context.scene.objects:
        raise RejectedInput(f"the {checked.format} importer created no objects")


def _open_blend(path: Path) -> None:
    try:
        bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False, use_scripts=False)
    except RuntimeError as exc:
        raise RejectedInput(f"Blender refused the file: {_blender_message(exc)}") from None
    disable_auto_exec()


def _reset_to_empty() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    disable_auto_exec()


IMPORTERS = {
    "gltf": lambda p: bpy.ops.import_scene.gltf(filepath=p),
    "fbx": lambda p: bpy.ops.import_scene.fbx(filepath=p),
    "obj": lambda p: bpy.ops.wm.obj_import(filepath=p),
    "stl": lambda p: bpy.ops.wm.stl_import(filepath=p),
    "ply": lambda p: bpy.ops.wm.ply_import(filepath=p),
    "usd": lambda p: bpy.ops.wm.usd_import(filepath=p),
}


def _import(fmt: str, path: Path) -> None:
    try:
        result = IMPORTERS[fmt](str(path))
    except RuntimeError as exc:
        raise RejectedInput(f"the {fmt} importer refused the file: {_blender_message(exc)}") from None
    if "FINISHED" not in result:
        raise RejectedInput(f"the {fmt} importer refused the file ({', '.join(sorted(result))})")


def _convert_ascii_fbx(path: Path, tmp: Path, assimp: str) -> Path:
    exe = shutil.which(assimp)
    if exe is None:
        raise RejectedInput(
            "ASCII FBX is not supported by Blender's FBX importer, and the assimp converter "
            f"({assimp!r}) is not installed (apt-get install assimp-utils)"
        )
    out = tmp / (path.stem + ".glb")
    _run_converter([exe, "export", str(path), str(out)], "assimp", out)
    return out


def _resave_with_legacy_blender(path: Path, tmp: Path, blender: str) -> Path:
    exe = shutil.which(blender)
    if exe is None:
        raise RejectedInput(
            "big-endian .blend: Blender 5.0 removed support for files saved by big-endian Blender "
            f"builds, and no older Blender ({blender!r}, e.g. Debian's blender 3.4) is installed to convert it"
        )
    out = tmp / "converted.blend"
    command = [exe, "--background", "--factory-startup", "-Y", str(path), "--python-exit-code", "1"]
    _run_converter([*command, "--python-expr", LEGACY_RESAVE, "--", str(out)], "legacy Blender", out)
    return out


def _run_converter(command: list[str], name: str, out: Path) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=CONVERTER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RejectedInput(f"{name} conversion took longer than {CONVERTER_TIMEOUT_S} s") from None
    if done.returncode != 0 or not out.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RejectedInput(f"{name} conversion failed (exit {done.returncode}): {tail[0][:300]}")


def _blender_message(exc: RuntimeError) -> str:
    """Blender's operator error text without its 'Error:' prefix and trailing whitespace."""
    text = str(exc).strip()
    return text.removeprefix("Error:").strip()[:500]
