"""Labelling and dataset-building speed on real corpus scenes, against reading the documents.

Registers, extracts and labels one file of every .blend pack (about 60) in a temporary embedded
setup, then times per scene: decoding the scene document (the floor every step pays), the mesh
measurements (quality checks, geometry hash, shape descriptor, symmetry), the category choice
with the encoder on one thread (what the labeller does) and on torch's default threads (the
baseline), and the whole label.extraction; then one geometry dataset build.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from sqlalchemy import select
from threadpoolctl import threadpool_limits

from services.labeler import geometry, pipeline
from services.labeler.dataset import build_dataset
from services.labeler.labeller import label_extraction
from services.labeler.taxonomy import CATEGORIES, TAXONOMY
from shared.blobs import get_blob_store
from shared.db import ensure_schema, session_scope
from shared.db.models import Extraction, ExtractionStatus
from shared.ml.text_embedding import embed
from shared.settings import get_settings


def per_scene(label: str, seconds: float, scenes: int, floor: float) -> None:
    ms = 1000 * seconds / scenes
    print(f"{label:<44} {ms:>9.1f} {ms / floor:>8.1f}x")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BMT_DATA_DIR"] = str(Path(tmp) / "var")
        get_settings.cache_clear()
        settings = get_settings()
        ensure_schema()
        pipeline.ingest_corpus()
        keys = pipeline.assets_at(pipeline.sample_paths(1, ("blend",)))
        ids = pipeline.extract_assets(keys)
        store = get_blob_store()
        with session_scope() as session:
            scene_keys = list(
                session.scalars(select(Extraction.scene_key).where(Extraction.status == ExtractionStatus.OK))
            )
        embed(["warm up the encoder"])

        start = time.perf_counter()
        docs = [json.loads(store.get_bytes(k)) for k in scene_keys]
        decode = time.perf_counter() - start
        meshes = [
            geometry.MeshArrays.from_doc(o.get("evaluated_mesh") or o["mesh"])
            for d in docs
            for o in d["objects"]
            if o.get("evaluated_mesh") or o.get("mesh")
        ]
        start = time.perf_counter()
        for mesh in meshes:
            geometry.quality(mesh, settings)
            digest = geometry.geometry_hash(mesh, settings.dedup_quantization_bits)
            geometry.shape_descriptor(mesh, seed=int(digest[:8], 16))
            geometry.mirror_axes(mesh)
        measure = time.perf_counter() - start

        queries = [
            [f"{d['objects'][0]['name']} {i}" if d["objects"] else f"empty {i}"] for i, d in enumerate(docs)
        ]
        descriptions = [TAXONOMY[c] for c in CATEGORIES]

        def encode_all() -> float:
            begin = time.perf_counter()
            for query in queries:  # one call per scene, as the labeller makes them; new texts each run
                embed([f"{query[0]} {begin}", *descriptions])
            return time.perf_counter() - begin

        default_threads = encode_all()
        with threadpool_limits(limits=1):
            one_thread = encode_all()

        start = time.perf_counter()
        for extraction_id in ids:
            with session_scope() as session:
                label_extraction(session, store, extraction_id, settings)
        label_all = time.perf_counter() - start
        start = time.perf_counter()
        with session_scope() as session:
            result = build_dataset(session, store, settings, name="bench", specialist="geometry", seed=0)
        build = time.perf_counter() - start

        n = len(docs)
        floor = 1000 * decode / n
        print(f"\n{n} scenes, {len(meshes)} meshes ({sum(len(m.faces) for m in meshes)} faces)")
        print(f"{'step':<44} {'ms/scene':>9} {'vs floor':>9}")
        per_scene("decode scene document (floor)", decode, n, floor)
        per_scene("mesh measurements (quality, hashes, symmetry)", measure, n, floor)
        per_scene("category encoder, default threads (baseline)", default_threads, n, floor)
        per_scene("category encoder, one thread (labeller)", one_thread, n, floor)
        per_scene("label.extraction, whole", label_all, n, floor)
        items = result.manifest["stats"]["items"]
        print(f"geometry dataset build: {build:.2f} s for {items} items ({1000 * build / items:.1f} ms/item)")


if __name__ == "__main__":
    main()
