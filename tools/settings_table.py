"""Regenerate the README's configuration table from shared.settings (python -m tools.settings_table)."""

from __future__ import annotations

import re
from pathlib import Path

from shared.settings import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default not in ("", None) else "(derived)"
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    return re.sub(f"{START}.*?{END}", f"{START}\n{table()}\n{END}", readme, flags=re.DOTALL)


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
