"""Content-addressed blob store: every blob is named by the sha256 of its bytes.

Two backends share one interface and one test suite: a local folder (the embedded default) and
S3/MinIO (production). Writes stream through a hasher into a staging place and become visible
under their final key only when complete (an atomic rename locally; a completed PUT or multipart
upload on S3), so a crashed upload never leaves a readable half-blob. Reads verify the hash.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, unquote, urlparse

CHUNK = 1 << 20
_KEY = re.compile(r"^[0-9a-f]{64}$")


class BlobError(Exception):
    """Base of the blob store's errors."""


class BlobNotFound(BlobError, KeyError):
    pass


class BlobCorrupted(BlobError, OSError):
    """The stored bytes no longer hash to their key."""


class BlobTooLarge(BlobError, ValueError):
    pass


def check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(f"not a blob key (64 lowercase hex digits): {key!r}")
    return key


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class BlobStore(ABC):
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes

    # -- writing ---------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> str:
        return self.put_stream(io.BytesIO(data))

    def put_file(self, path: str | os.PathLike[str]) -> str:
        with open(path, "rb") as f:
            return self.put_stream(f)

    def put_stream(self, stream: BinaryIO) -> str:
        """Store everything read from ``stream``; returns its sha256. Never holds it all in memory."""
        with tempfile.NamedTemporaryFile(prefix="blob-", dir=self._staging_dir(), delete=False) as staged:
            digest = hashlib.sha256()
            size = 0
            try:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise BlobTooLarge(f"blob exceeds the {self.max_bytes}-byte limit")
                    digest.update(chunk)
                    staged.write(chunk)
                staged.flush()
                os.fsync(staged.fileno())
                key = digest.hexdigest()
                if not self.exists(key):
                    self._commit(Path(staged.name), key, size)
                return key
            finally:
                Path(staged.name).unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------------
    def stream(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Yield the blob's bytes; raises BlobCorrupted after the last chunk if they don't match."""
        digest = hashlib.sha256()
        for chunk in self._read_chunks(check_key(key), chunk_size):
            digest.update(chunk)
            yield chunk
        if digest.hexdigest() != key:
            raise BlobCorrupted(f"blob {key} is corrupted: its content hashes to {digest.hexdigest()}")

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.stream(key))

    def fetch_to_path(self, key: str, dest: str | os.PathLike[str]) -> Path:
        """Copy a blob to a local file, verified before it appears under ``dest``."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=".fetch-", delete=False) as tmp:
            try:
                for chunk in self.stream(key):
                    tmp.write(chunk)
                tmp.close()
                os.replace(tmp.name, dest)
            except BaseException:
                Path(tmp.name).unlink(missing_ok=True)
                raise
        return dest

    def check(self, timeout_s: float = 1.0) -> None:
        """Raise unless the store answers now (readiness probes: one try, no retries)."""
        self.exists("0" * 64)

    # -- backend-specific ------------------------------------------------------------------
    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove a blob; removing a missing blob is not an error (deletes are idempotent)."""

    @abstractmethod
    def _staging_dir(self) -> str | None: ...

    @abstractmethod
    def _commit(self, staged: Path, key: str, size: int) -> None: ...

    @abstractmethod
    def _read_chunks(self, key: str, chunk_size: int) -> Iterator[bytes]: ...


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root/ab/cd/<sha256>``; staging lives in ``root/.staging``."""

    def __init__(self, root: str | os.PathLike[str], max_bytes: int):
        super().__init__(max_bytes)
        self.root = Path(root)
        self._staging = self.root / ".staging"
        self._staging.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def _staging_dir(self) -> str:
        return str(self._staging)

    def _commit(self, staged: Path, key: str, size: int) -> None:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        # A hard link keeps the staged name valid for the caller's cleanup; os.replace is atomic.
        # The staged name is unique, so concurrent writers of the same blob never share a temp name.
        linked = final.with_name(f".{key}.{staged.name}")
        os.link(staged, linked)
        os.replace(linked, final)

    def _read_chunks(self, key: str, chunk_size: int) -> Iterator[bytes]:
        try:
            f = open(self.path(key), "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        with f:
            while chunk := f.read(chunk_size):
                yield chunk


class S3BlobStore(BlobStore):
    """Blobs as objects ``<prefix><sha256>`` in one bucket of MinIO or any S3-protocol server."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool,
        region: str | None,
        max_bytes: int,
        prefix: str = "blobs/",
    ):
        import urllib3
        from minio import Minio

        super().__init__(max_bytes)
        self.client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region
        )
        self._probe_client = lambda timeout_s: Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=timeout_s)),
        )
        self.bucket = bucket
        self.prefix = prefix

    def check(self, timeout_s: float = 1.0) -> None:
        # The main client retries for seconds (right for uploads); a probe must answer now, so
        # that a server that is back is seen at once.
        if not self._probe_client(timeout_s).bucket_exists(self.bucket):
            raise BlobError(f"bucket {self.bucket!r} does not exist")

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def exists(self, key: str) -> bool:
        return self._stat(key) is not None

    def size(self, key: str) -> int:
        stat = self._stat(key)
        if stat is None:
            raise BlobNotFound(key)
        return int(stat.size or 0)

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, self._name(key))

    def _stat(self, key: str):  # type: ignore[no-untyped-def]
        from minio.error import S3Error

        try:
            return self.client.stat_object(self.bucket, self._name(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return None
            raise

    def _staging_dir(self) -> None:
        return None  # the system temp dir; S3 itself never shows an incomplete upload

    def _commit(self, staged: Path, key: str, size: int) -> None:
        # fput_object switches to multipart for large files; the object appears only when complete.
        self.client.fput_object(
            self.bucket, self._name(key), str(staged), content_type="application/octet-stream"
        )

    def _read_chunks(self, key: str, chunk_size: int) -> Iterator[bytes]:
        from minio.error import S3Error

        try:
            response = self.client.get_object(self.bucket, self._name(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise BlobNotFound(key) from None
            raise
        try:
            yield from response.stream(chunk_size)
        finally:
            response.close()
            response.release_conn()


def open_blob_store(url: str, max_bytes: int) -> BlobStore:
    """``file:///abs/path`` or ``file://rel/path``; ``s3://KEY:SECRET@host:port/bucket?secure=true&region=R``."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalBlobStore(unquote(parsed.netloc + parsed.path), max_bytes)
    if parsed.scheme == "s3":
        query = parse_qs(parsed.query)
        bucket = parsed.path.strip("/")
        if not (parsed.hostname and bucket and parsed.username and parsed.password):
            raise ValueError("blob URL must look like s3://ACCESS_KEY:SECRET_KEY@host:port/bucket")
        endpoint = parsed.hostname + (f":{parsed.port}" if parsed.port else "")
        store = S3BlobStore(
            endpoint,
            unquote(parsed.username),
            unquote(parsed.password),
            bucket,
            secure=query.get("secure", ["false"])[0].lower() == "true",
            region=query.get("region", [None])[0],
            max_bytes=max_bytes,
        )
        store.ensure_bucket()
        return store
    raise ValueError(f"unsupported blob URL scheme {parsed.scheme!r} (use file:// or s3://)")


def get_blob_store(url: str | None = None) -> BlobStore:
    from shared.settings import get_settings

    settings = get_settings()
    return open_blob_store(url or settings.blob_url, settings.max_upload_bytes)
