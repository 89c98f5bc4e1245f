"""The landing zone: a local directory or an S3 bucket/prefix, behind one interface.

Both sides return the same relative keys, sizes, ETags and modification times, so
the bronze assets and the landing sensor never care where files land. Keys are
returned exactly as stored (any UTF-8, never normalised); the local zone turns a
key into a path only after `check_key` and only if the resolved path stays under
its root.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import dagster as dg

from lakehouse.layout import LandingObject, check_key

log = logging.getLogger(__name__)


class LandingZone:
    """Read-only view of the landing zone, plus `put` for the sample generator and tests."""

    uri: str

    def list(self, prefix: str) -> Iterator[LandingObject]:
        raise NotImplementedError

    def list_level(self, prefix: str) -> tuple[list[str], list[LandingObject]]:
        """One level under `prefix` (which ends with '/'): sub-folder names and the files.

        The landing sensor walks the date folders with this instead of listing every
        object, so a tick costs requests per folder, not per file ever landed.
        """
        raise NotImplementedError

    def read(self, key: str) -> bytes:
        raise NotImplementedError

    @contextlib.contextmanager
    def fetch(self, key: str, folder: str) -> Iterator[str]:
        """A local file holding the object's bytes, for as long as the block lasts: bronze reads a
        file from disk a block at a time, never whole in memory. Here (S3) it is downloaded into
        `folder` as a stream and removed after."""
        path = os.path.join(folder, f"fetched-{uuid.uuid4().hex}")
        try:
            with open(path, "wb") as out:
                self.download(key, out)
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def download(self, key: str, out) -> None:
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def describe(self, key: str) -> str:
        """A full URI for messages and lineage."""
        return f"{self.uri.rstrip('/')}/{key}"


class LocalLandingZone(LandingZone):
    def __init__(self, uri: str):
        self.uri = uri
        self.root = Path(urlparse(uri).path if uri.startswith("file://") else uri)

    def _path(self, key: str) -> Path:
        """The path of a key: refused (ValueError with the reason) unless it is safe and inside the root."""
        check_key(key)
        root = self.root.resolve()
        path = (root / key).resolve()
        if root not in path.parents:
            raise ValueError(f"key {key!r} escapes the landing root")
        return path

    def _object(self, path: Path) -> LandingObject | None:
        """The file at `path` as an object; None (logged) for a link that leads outside the root."""
        root = self.root.resolve()
        if root not in path.resolve().parents:
            log.warning("skipped %s: a link that leads outside the landing root", path)
            return None
        stat = path.stat()
        return LandingObject(
            key=path.relative_to(self.root).as_posix(),
            size=stat.st_size,
            etag=_md5_file(path),
            last_modified=dt.datetime.fromtimestamp(stat.st_mtime, dt.timezone.utc),
        )

    def _under_root(self, prefix: str) -> Path | None:
        """The folder of a listing prefix, or None when it would lead outside the root."""
        base, root = self.root / prefix, self.root.resolve()
        resolved = base.resolve()
        return base if resolved == root or root in resolved.parents else None

    def list(self, prefix: str) -> Iterator[LandingObject]:
        base = self._under_root(prefix)
        if base is None:
            return
        start = base if base.is_dir() else base.parent
        if not start.is_dir():
            return
        for path in sorted(start.rglob("*")):
            if not path.is_file() or not path.relative_to(self.root).as_posix().startswith(prefix):
                continue
            obj = self._object(path)
            if obj is not None:
                yield obj

    def list_level(self, prefix: str) -> tuple[list[str], list[LandingObject]]:
        base = self._under_root(prefix)
        if base is None or not base.is_dir():
            return [], []
        folders, files = [], []
        for path in sorted(base.iterdir()):
            if path.is_dir():
                folders.append(path.name)
            elif path.is_file() and (obj := self._object(path)) is not None:
                files.append(obj)
        return folders, files

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    @contextlib.contextmanager
    def fetch(self, key: str, folder: str) -> Iterator[str]:
        """The file itself: nothing to download."""
        yield str(self._path(key))

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # readers never see a half-written file


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class S3LandingZone(LandingZone):
    """S3 through boto3; `AWS_ENDPOINT_URL` (boto3's own variable) reaches S3-compatible servers."""

    def __init__(self, uri: str, client=None):
        parsed = urlparse(uri)
        self.uri = uri.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self._client = client

    @property
    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def list(self, prefix: str) -> Iterator[LandingObject]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._full(prefix)):
            for obj in page.get("Contents", []):
                if not _placeholder(obj):
                    yield self._object(obj)

    def _object(self, obj: dict) -> LandingObject:
        return LandingObject(
            key=self._relative(obj["Key"]),
            size=obj["Size"],
            etag=obj["ETag"].strip('"'),
            last_modified=obj["LastModified"].astimezone(dt.timezone.utc),
        )

    def list_level(self, prefix: str) -> tuple[list[str], list[LandingObject]]:
        folders, files = [], []
        full = self._full(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
            # A common prefix keeps its trailing '/': "a//b" under `full` is the folder "" (kept, so refused).
            folders += [p["Prefix"][len(full):-1] for p in page.get("CommonPrefixes", [])]
            files += [self._object(o) for o in page.get("Contents", []) if not _placeholder(o)]
        return folders, files

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"].read()

    def download(self, key: str, out) -> None:
        with contextlib.closing(self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"]) as body:
            shutil.copyfileobj(body, out, 8 << 20)

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data)


def _placeholder(obj: dict) -> bool:
    """An empty key ending in '/': the folder marker consoles make, not a file."""
    return obj["Key"].endswith("/") and obj["Size"] == 0


def open_landing_zone(uri: str) -> LandingZone:
    return S3LandingZone(uri) if uri.startswith("s3://") else LocalLandingZone(uri)


class LandingZoneResource(dg.ConfigurableResource):
    """Where raw files land: `file:///dir` locally, `s3://bucket[/prefix]` on AWS."""

    uri: str

    def zone(self) -> LandingZone:
        return open_landing_zone(self.uri)
