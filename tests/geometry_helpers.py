"""Helpers shared by the geometry tests."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

from services.trainer.geometry import TrainConfig

# A parts model's two halves at test size.
SMALL = {"d_model": 32, "n_layers": 1, "n_heads": 2, "prefix_tokens": 2}


def small_parts_config(dataset: str, run_dir, max_steps: int) -> TrainConfig:
    """A parts run of SMALL models that trains in seconds (checkpoints every 2 steps)."""
    return TrainConfig(
        model="parts",
        dataset=dataset,
        run_dir=str(run_dir),
        max_steps=max_steps,
        batch_tokens=1024,
        checkpoint_every=2,
        threads=1,
        model_overrides={"structure": SMALL, "part": {**SMALL, "max_tokens": 256}},
    )


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
