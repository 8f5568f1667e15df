"""Which items two dataset versions disagree on, and how: ``python -m services.labeler diff A B``.

A and B are anything shared.ml.datasets opens (a name, a manifest sha256, a folder or its
manifest.json). Items are matched by id; a changed item names what changed: the fields its
manifest entry carries in clear (split, license, attribution, category, pack, faces...) and those
it carries as content hashes (mesh, captions, material...). Manifests from before format 2 carry no
hashes: their items are read from the shards and hashed the same way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.labeler.dataset import SPLITS, content_hashes
from shared.ml.datasets import iter_split, open_dataset


@dataclass
class DatasetDiff:
    versions: tuple[str, str]
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # item id -> what differs
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # item id -> an entry of it

    @property
    def same(self) -> bool:
        return not (self.only_in_a or self.only_in_b or self.changed)

    def lines(self, most: int = 50) -> list[str]:
        a, b = self.versions
        if self.same:
            return [f"{a} and {b}: the same {len(self.entries)} items"]
        by_part = Counter(part for parts in self.changed.values() for part in parts)
        out = [
            f"{a} -> {b}: {len(self.changed)} items changed, {len(self.only_in_a)} only in {a}, "
            f"{len(self.only_in_b)} only in {b}",
            "changed fields: " + ", ".join(f"{part} {n}" for part, n in by_part.most_common()),
        ]
        rows = [
            *(
                f"changed {i} {self._name(i)}: {', '.join(parts)}"
                for i, parts in sorted(self.changed.items())
            ),
            *(f"only in {a}: {i} {self._name(i)}" for i in self.only_in_a),
            *(f"only in {b}: {i} {self._name(i)}" for i in self.only_in_b),
        ]
        out += rows[:most]
        if len(rows) > most:
            out.append(f"... and {len(rows) - most} more")
        return out

    def _name(self, item_id: str) -> str:
        entry = self.entries[item_id]
        return f"({entry['asset_sha256'][:12]}/{entry['object']})"


def _entries(ref: str | Path, specialist: str) -> tuple[str, dict[str, dict[str, Any]]]:
    manifest, _ = open_dataset(ref, specialist)
    entries = {e["id"]: e for e in manifest["items"]}
    if any("hashes" not in e for e in entries.values()):  # before format 2: hash the shards' items
        for split in SPLITS:
            for item in iter_split(ref, split, specialist):
                entry = entries[item["id"]]
                entry.update(
                    content_hashes(item, {k: v for k, v in entry.items() if k not in ("sha256", "hashes")})
                )
    return str(manifest.get("version")), entries


def diff_datasets(a: str | Path, b: str | Path, specialist: str = "geometry") -> DatasetDiff:
    version_a, entries_a = _entries(a, specialist)
    version_b, entries_b = _entries(b, specialist)
    result = DatasetDiff((version_a, version_b), entries={**entries_b, **entries_a})
    result.only_in_a = sorted(set(entries_a) - set(entries_b))
    result.only_in_b = sorted(set(entries_b) - set(entries_a))
    for item_id in sorted(set(entries_a) & set(entries_b)):
        old, new = entries_a[item_id], entries_b[item_id]
        if old.get("sha256") == new.get("sha256") and old.get("split") == new.get("split"):
            continue
        clear = sorted(k for k in {*old, *new} - {"sha256", "hashes"} if old.get(k) != new.get(k))
        hashed_old, hashed_new = old.get("hashes", {}), new.get("hashes", {})
        hashed = sorted(k for k in {*hashed_old, *hashed_new} if hashed_old.get(k) != hashed_new.get(k))
        result.changed[item_id] = clear + hashed or ["content"]
    return result
