"""Pack addon/ into dist/<id>-<version>.zip for Blender's "Install from Disk" (no Blender needed).

Blender reads the extension id and version from blender_manifest.toml at the root of the zip.
"""

from __future__ import annotations

import argparse
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def pack(source: Path = REPO / "addon", out_dir: Path = REPO / "dist") -> Path:
    manifest = tomllib.loads((source / "blender_manifest.toml").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    files = sorted(
        p
        for p in source.rglob("*")
        if p.is_file()
        and not SKIPPED_DIRS & set(p.relative_to(source).parts)
        and p.suffix not in SKIPPED_SUFFIXES
    )
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            # A fixed timestamp keeps the zip byte-identical for identical sources.
            info = zipfile.ZipInfo(path.relative_to(source).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=REPO / "dist")
    args = parser.parse_args(argv)
    print(pack(out_dir=args.out_dir))


if __name__ == "__main__":
    main()
