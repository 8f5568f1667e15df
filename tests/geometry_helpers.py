"""Helpers shared by the geometry tests."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile


def write_dataset(folder, splits: dict[str, list[dict]], specialist: str = "geometry") -> None:
    """A dataset as issue 6 specifies it: deterministic tar shards named by sha256 and a manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": f"test-{specialist}",
        "version": "1",
        "specialist": specialist,
        "seed": 0,
        "splits": {},
        "items": [],
    }
    for split, items in splits.items():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for item in sorted(items, key=lambda it: it["id"]):
                data = json.dumps(item, sort_keys=True).encode()
                info = tarfile.TarInfo(f"{item['id']}.json")
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
        sha = hashlib.sha256(buf.getvalue()).hexdigest()
        (folder / f"{sha}.tar").write_bytes(buf.getvalue())
        manifest["splits"][split] = {"shards": [sha], "items": len(items)}
    (folder / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
