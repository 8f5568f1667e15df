"""One test suite for both blob backends: the local folder and S3 over real HTTP."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from pathlib import Path

import pytest

from shared.blobs import BlobCorrupted, BlobNotFound, BlobStore, BlobTooLarge, LocalBlobStore, open_blob_store

LIMIT = 8 << 20


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return open_blob_store(f"file://{tmp_path / 'blobs'}", LIMIT)
    endpoint = request.getfixturevalue("s3_endpoint")
    return open_blob_store(f"s3://testkey:testsecret@{endpoint}/b{uuid.uuid4().hex[:12]}", LIMIT)


def test_put_get_exists_size_delete(store: BlobStore):
    key = store.put_bytes(b"hello blender")
    assert key == hashlib.sha256(b"hello blender").hexdigest()
    assert store.exists(key) and store.size(key) == 13
    assert store.get_bytes(key) == b"hello blender"
    assert store.put_bytes(b"hello blender") == key  # idempotent
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)  # deleting twice is fine
    with pytest.raises(BlobNotFound):
        store.get_bytes(key)
    with pytest.raises(BlobNotFound):
        store.size(key)


def test_large_file_streams_in_chunks(store: BlobStore, tmp_path: Path):
    data = os.urandom(5 << 20)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    key = store.put_file(source)
    chunks = list(store.stream(key, chunk_size=1 << 20))
    assert len(chunks) >= 5 and max(map(len, chunks)) <= 1 << 20
    assert b"".join(chunks) == data
    out = store.fetch_to_path(key, tmp_path / "out" / "copy.bin")
    assert out.read_bytes() == data


def test_oversized_upload_is_refused_and_leaves_nothing(store: BlobStore):
    with pytest.raises(BlobTooLarge):
        store.put_stream(io.BytesIO(b"x" * (LIMIT + 1)))
    assert not store.exists(hashlib.sha256(b"x" * (LIMIT + 1)).hexdigest())


class Exploding(io.RawIOBase):
    """A source that dies half-way, like a dropped download."""

    def __init__(self):
        self.sent = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.sent >= 3 << 20:
            raise ConnectionResetError("peer went away")
        n = min(len(buffer), 1 << 20)
        buffer[:n] = b"a" * n
        self.sent += n
        return n


def test_half_written_upload_never_becomes_visible(store: BlobStore, tmp_path: Path):
    with pytest.raises(ConnectionResetError):
        store.put_stream(io.BufferedReader(Exploding()))
    partial = hashlib.sha256(b"a" * (3 << 20)).hexdigest()
    assert not store.exists(partial)
    if isinstance(store, LocalBlobStore):
        assert list((store.root / ".staging").iterdir()) == []


def test_keys_are_checked(store: BlobStore):
    with pytest.raises(ValueError, match="not a blob key"):
        store.exists("../../etc/passwd")


def test_local_read_detects_corruption(tmp_path: Path):
    store = LocalBlobStore(tmp_path, LIMIT)
    key = store.put_bytes(b"original bytes")
    path = store.path(key)
    path.chmod(0o644)
    path.write_bytes(b"tampered bytes")
    with pytest.raises(BlobCorrupted, match=key):
        store.get_bytes(key)
    with pytest.raises(BlobCorrupted):
        store.fetch_to_path(key, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_s3_read_detects_corruption(s3_endpoint: str):
    store = open_blob_store(f"s3://k:s@{s3_endpoint}/corrupt", LIMIT)
    key = store.put_bytes(b"original bytes")
    store.client.put_object(store.bucket, store._name(key), io.BytesIO(b"tampered"), 8)  # type: ignore[attr-defined]
    with pytest.raises(BlobCorrupted):
        store.get_bytes(key)


def test_bad_urls_are_explained():
    with pytest.raises(ValueError, match="unsupported blob URL scheme 'ftp'"):
        open_blob_store("ftp://x/y", LIMIT)
    with pytest.raises(ValueError, match="s3://ACCESS_KEY:SECRET_KEY@host:port/bucket"):
        open_blob_store("s3://host:9000/bucket", LIMIT)


def test_concurrent_writers_of_the_same_blob(store: BlobStore):
    from concurrent.futures import ThreadPoolExecutor

    data = os.urandom(256 << 10)
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(pool.map(lambda _: store.put_bytes(data), range(16)))
    assert set(keys) == {hashlib.sha256(data).hexdigest()}
    assert store.get_bytes(keys[0]) == data
    if isinstance(store, LocalBlobStore):
        assert list((store.root / ".staging").iterdir()) == []
        assert [p.name for p in store.path(keys[0]).parent.iterdir()] == [keys[0]]
