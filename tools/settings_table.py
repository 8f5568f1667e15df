"""Regenerate the README's configuration table from shared.settings (python -m tools.settings_table)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from blender_worker.settings import ExtractSettings
from shared.settings import Settings

SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (Settings, ExtractSettings)

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for cls in SETTINGS_CLASSES:
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            default = field.default if field.default not in ("", None) else "(derived)"
            rows.append(f"| `{prefix}{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    return re.sub(f"{START}.*?{END}", f"{START}\n{table()}\n{END}", readme, flags=re.DOTALL)


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
