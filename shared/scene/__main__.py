"""python -m shared.scene schema | validate FILE..."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shared.scene import SceneValidationError, json_schema, parse_scene


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.scene", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("schema", help="print the scene format's JSON Schema")
    check = sub.add_parser("validate", help="validate scene documents; exit 1 if any is invalid")
    check.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "schema":
        json.dump(json_schema(), sys.stdout, indent=2)
        print()
        return 0
    failed = 0
    for path in args.files:
        try:
            scene = parse_scene(path.read_bytes())
        except SceneValidationError as exc:
            failed += 1
            print(f"{path}: {exc}", file=sys.stderr)
        else:
            print(f"{path}: ok ({len(scene.objects)} objects)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
