"""The add-on as a user gets it: `make addon`'s zip installs with Blender's "Install from Disk"
(extensions.package_install_files) into a throw-away user folder, and it imports only bpy and
the standard library."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.addon_support import small_scene
from tools.lint_addon import check as blender_extension_check
from tools.pack_addon import pack

REPO = Path(__file__).resolve().parents[1]
ADDON_DIR = REPO / "addon"
BLENDER_MODULES = {"bpy", "mathutils", "bpy_extras", "addon_utils"}

INSTALL_SCRIPT = r"""
import json, sys
import bpy, addon_utils
zip_path, scene_path = sys.argv[1], sys.argv[2]
assert bpy.ops.extensions.package_install_files(
    filepath=zip_path, repo="user_default", enable_on_install=True
) == {"FINISHED"}
module = "bl_ext.user_default.blender_model_training"
report = {"enabled": module in bpy.context.preferences.addons, "panel": hasattr(bpy.types, "BMT_PT_generate")}
prefs = bpy.context.preferences.addons[module].preferences
report["default_url"] = prefs.gateway_url
import importlib
injector = importlib.import_module(module + ".injector")
result = injector.inject_scene(json.load(open(scene_path)))
report["objects"] = [o.name for o in result.objects]
for _ in range(2):
    addon_utils.disable(module, default_set=True)
    report.setdefault("after_disable", []).append(hasattr(bpy.types.WindowManager, "bmt"))
    addon_utils.enable(module, default_set=True)
    report.setdefault("after_enable", []).append(hasattr(bpy.types.WindowManager, "bmt"))
print("REPORT" + json.dumps(report))
"""


def test_zip_holds_the_extension_and_nothing_else(tmp_path):
    (ADDON_DIR / "__pycache__").mkdir(exist_ok=True)  # as left behind by any test run
    target = pack(out_dir=tmp_path)
    manifest = tomllib.loads((ADDON_DIR / "blender_manifest.toml").read_text())
    assert target.name == f"{manifest['id']}-{manifest['version']}.zip" == "blender_model_training-0.1.0.zip"
    assert manifest["schema_version"] == "1.0.0" and manifest["blender_version_min"] == "4.2.0"
    assert manifest["permissions"] == {"network": "talks to the configured generation gateway"}
    names = set(zipfile.ZipFile(target).namelist())
    expected = {p.name for p in ADDON_DIR.iterdir() if p.is_file() and p.suffix in (".py", ".toml", ".md")}
    assert names == expected and "blender_manifest.toml" in names and "__init__.py" in names
    assert pack(out_dir=tmp_path / "again").read_bytes() == target.read_bytes()  # reproducible


def test_blender_extension_validator_accepts_the_add_on(tmp_path):
    assert blender_extension_check() == []
    # The same check on a copy whose tagline is over Blender's 64 characters names the problem.
    copy = tmp_path / "addon"
    shutil.copytree(ADDON_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = copy / "blender_manifest.toml"
    manifest.write_text(re.sub(r"(?m)^tagline = .*$", 'tagline = "' + "x" * 65 + '"', manifest.read_text()))
    problems = blender_extension_check(copy)
    assert any("tagline" in p and "64 characters" in p for p in problems), problems


def test_addon_imports_only_bpy_and_the_standard_library():
    for path in ADDON_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in sys.stdlib_module_names or root in BLENDER_MODULES, (
                    f"{path.name} imports {root}"
                )
    for path in ADDON_DIR.glob("*.py"):
        source = path.read_text()
        for forbidden in ("exec(", "eval(", "bpy.data.texts", "use_scripts_auto_execute", "compile("):
            assert forbidden not in source, f"{path.name} contains {forbidden}"


@pytest.mark.slow
def test_install_from_disk_enables_the_extension(tmp_path):
    target = pack(out_dir=tmp_path / "dist")
    scene_path = tmp_path / "scene.json"
    scene_path.write_text(json.dumps(small_scene("Installed")))
    script = tmp_path / "install.py"
    script.write_text(INSTALL_SCRIPT)
    env = {**os.environ}
    for kind in ("EXTENSIONS", "CONFIG", "SCRIPTS", "DATAFILES"):
        env[f"BLENDER_USER_{kind}"] = str(tmp_path / "user" / kind.lower())
    run = subprocess.run(
        [sys.executable, str(script), str(target), str(scene_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.split("REPORT", 1)[1])
    assert report == {
        "enabled": True,
        "panel": True,
        "default_url": "http://127.0.0.1:8000",
        "objects": ["Installed"],
        "after_disable": [False, False],
        "after_enable": [True, True],
    }
    assert (
        tmp_path / "user" / "extensions" / "user_default" / "blender_model_training" / "injector.py"
    ).exists()
