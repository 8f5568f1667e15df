"""Blob store throughput: local folder and S3 (moto on loopback), against a plain file copy.

Prints one table; the copy is the floor the content-addressed store pays hashing and staging on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from shared.blobs import BlobStore, open_blob_store
from tools.servers import start_s3_server

SIZES = {"64 KiB x 200": (64 << 10, 200), "8 MiB x 8": (8 << 20, 8), "64 MiB x 2": (64 << 20, 2)}


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(label: str, files: list[Path], store: BlobStore | None, work: Path) -> tuple[str, float, float]:
    total = sum(f.stat().st_size for f in files)
    if store is None:
        out = work / f"copy-{uuid.uuid4().hex}"
        out.mkdir()
        write = timed(lambda: [shutil.copyfile(f, out / f.name) for f in files])
        read = timed(lambda: [(out / f.name).read_bytes() for f in files])
    else:
        keys: list[str] = []
        write = timed(lambda: keys.extend(store.put_file(f) for f in files))
        read = timed(lambda: [store.get_bytes(k) for k in keys])
    return label, total / write / 1e6, total / read / 1e6


def main() -> None:
    server, endpoint = start_s3_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            print(f"{'case':<14} {'backend':<16} {'write MB/s':>11} {'read MB/s':>10}")
            for case, (size, count) in SIZES.items():
                files = []
                for i in range(count):
                    path = work / f"{case[:2].strip()}-{i}.bin"
                    path.write_bytes(os.urandom(size))
                    files.append(path)
                backends = {
                    "file copy (floor)": None,
                    "local": open_blob_store(f"file://{work / 'blobs'}", 1 << 31),
                    "s3 (moto)": open_blob_store(f"s3://k:s@{endpoint}/bench{uuid.uuid4().hex[:8]}", 1 << 31),
                }
                for name, store in backends.items():
                    _, write, read = measure(name, files, store, work)
                    print(f"{case:<14} {name:<16} {write:>11.0f} {read:>10.0f}")
                for f in files:
                    f.unlink()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
