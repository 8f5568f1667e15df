"""Reading dataset items (any specialist's: manifest + tar shards) and extracted scene documents.

Pure Python. Every specialist's dataset has the same shape, so one reader serves all four; each
call names the specialist it expects (geometry by default) and refuses another's manifest. A dataset is named by a manifest: the sha256 of a manifest blob in the blob store
(``shared.blobs``), a manifest JSON file, a folder holding ``manifest.json``, or the name a dataset
was built under (the newest of that name in the metadata database). For local files,
shards are looked up beside the manifest (or in ``shards/``) as ``<sha256>`` or ``<sha256>.tar``,
and verified against their hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

SPLITS = ("train", "val", "test")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DatasetError(ValueError):
    """A dataset reference that cannot be resolved, or a shard that is missing or corrupt."""


def _local_reader(folder: Path) -> Callable[[str], bytes]:
    def read(sha: str) -> bytes:
        for candidate in (
            folder / sha,
            folder / f"{sha}.tar",
            folder / "shards" / sha,
            folder / "shards" / f"{sha}.tar",
        ):
            if candidate.is_file():
                data = candidate.read_bytes()
                if hashlib.sha256(data).hexdigest() != sha:
                    raise DatasetError(f"shard {candidate} does not match its sha256 {sha}")
                return data
        raise DatasetError(f"shard {sha} not found beside the manifest in {folder}")

    return read


def open_dataset(ref: str | Path, specialist: str = "geometry") -> tuple[dict, Callable[[str], bytes]]:
    """(manifest, read_shard) for a manifest sha256 in the blob store, a manifest file or its folder,
    or a dataset name."""
    manifest, reader, _, _ = _resolve(ref, specialist)
    return manifest, reader


def _resolve(ref: str | Path, specialist: str) -> tuple[dict, Callable[[str], bytes], str, bytes]:
    """(manifest, read_shard, the manifest's sha256, the manifest's bytes)."""
    text = str(ref)
    path = Path(text)
    if path.is_dir():
        path = path / "manifest.json"
    if path.is_file():
        data = path.read_bytes()
        try:
            manifest = json.loads(data)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} is not a JSON manifest: {exc}") from exc
        reader, sha = _local_reader(path.parent), hashlib.sha256(data).hexdigest()
    elif "/" in text or text.endswith(".json"):
        raise DatasetError(f"dataset {text!r}: no manifest file or folder there")
    else:
        from shared.blobs import get_blob_store  # only needed for datasets in the blob store

        store = get_blob_store()
        sha = text if _SHA256.match(text) else dataset_by_name(text, specialist)
        data = store.get_bytes(sha)
        manifest = json.loads(data)
        reader = store.get_bytes
    if manifest.get("specialist") != specialist or "splits" not in manifest:
        raise DatasetError(
            f"{text}: not a {specialist} dataset manifest (specialist={manifest.get('specialist')!r})"
        )
    return manifest, reader, sha, data


def dataset_by_name(name: str, specialist: str = "geometry") -> str:
    """The manifest sha256 of the newest dataset of this specialist built under this name (metadata database)."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from shared.db import session_scope
    from shared.db.models import Dataset

    try:
        with session_scope() as session:
            key = session.scalars(
                select(Dataset.manifest_key)
                .where(Dataset.name == name, Dataset.specialist == specialist)
                .order_by(Dataset.id.desc())
            ).first()
    except SQLAlchemyError as exc:
        raise DatasetError(f"dataset {name!r}: the metadata database cannot be read ({exc})") from exc
    if key is None:
        raise DatasetError(
            f"dataset {name!r} is neither a manifest sha256 nor the name of a {specialist} dataset built here"
        )
    return key


def iter_split(ref: str | Path, split: str, specialist: str = "geometry") -> Iterator[dict]:
    """Items of one split, in shard and member order."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {SPLITS}")
    manifest, read = open_dataset(ref, specialist)
    for sha in manifest["splits"].get(split, {}).get("shards", []):
        with tarfile.open(fileobj=io.BytesIO(read(sha)), mode="r:") as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith(".json"):
                    yield json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]


def dataset_version(ref: str | Path, specialist: str = "geometry") -> dict:
    """What a training run records about its data, with the manifest's sha256 that pins it."""
    manifest, _, sha, _ = _resolve(ref, specialist)
    return {
        "ref": str(ref),
        "manifest_sha256": sha,
        "name": manifest.get("name"),
        "version": manifest.get("version"),
        "items": {s: manifest["splits"].get(s, {}).get("items", 0) for s in SPLITS},
    }


def export_dataset(ref: str | Path, out: str | Path, specialist: str = "geometry") -> Path:
    """Copies a dataset (manifest and shards, byte for byte) into a folder that ``--dataset`` reads
    on a machine without the blob store or the metadata database (a GPU box, say)."""
    manifest, read, _, data = _resolve(ref, specialist)
    folder = Path(out)
    (folder / "shards").mkdir(parents=True, exist_ok=True)
    for split in manifest["splits"].values():
        for sha in split.get("shards", []):
            (folder / "shards" / sha).write_bytes(read(sha))
    (folder / "manifest.json").write_bytes(data)
    return folder


def iter_scene_meshes(folder: str | Path) -> Iterator[tuple[str, dict]]:
    """(name, mesh) of every object of the scene documents (*.json) in a folder, evaluated mesh first."""
    for path in sorted(Path(folder).glob("*.json")):
        doc = json.loads(path.read_text())
        for obj in doc.get("objects", []):
            mesh = obj.get("evaluated_mesh") or obj.get("mesh")
            if mesh and mesh.get("faces"):
                yield f"{path.stem}/{obj.get('name')}", mesh
