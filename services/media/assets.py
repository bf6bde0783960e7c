"""Named images on a directory (a volume shared by the replicas).

An asset is just a file: ``PUT /v1/assets/{name}`` writes one atomically, and operators may
also drop files into the directory. Which media_id stands for an asset right now is the
by-hash record of its bytes (``records``), so renaming or copying an asset costs no upload.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from pathlib import Path

import msgspec

from services.media.errors import (
    AssetNotFound,
    BadAssetName,
    NotAnImage,
    TooLarge,
    TypeNotAllowed,
)
from services.media.intake import Intake
from services.media.sniff import HEAD_BYTES, Kind, describe, sniff

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class AssetFile(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: Kind
    sha256: str
    size: int


def check_name(name: str) -> str:
    # Dot-first names are reserved for the temporary files of a PUT in progress.
    if not _NAME.fullmatch(name) or ".." in name:
        raise BadAssetName(
            f"asset names are 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter "
            f"or digit; got {name[:64]!r}"
        )
    return name


class AssetDir:
    """Blocking file-system operations on the asset directory (callers use a thread)."""

    def __init__(self, directory: Path, *, max_bytes: int, allowed: frozenset[Kind]) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.allowed = allowed
        # Hash and kind per (name, inode, size, mtime): a file's bytes are read once per change.
        self._memo: dict[str, tuple[tuple[int, int, int], str, Kind]] = {}

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, intake: Intake) -> AssetFile:
        """Store ``intake`` under ``name``, replacing any previous bytes atomically."""
        check_name(name)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                src = intake.open()
                while chunk := src.read(256 * 1024):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.directory / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return AssetFile(name=name, kind=intake.kind, sha256=intake.sha256, size=intake.size)

    def describe(self, name: str) -> AssetFile:
        """Kind, hash and size of the asset's current bytes."""
        path = self._path(name)
        stat = self._stat(path, name)
        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        memo = self._memo.get(name)
        if memo is not None and memo[0] == stamp:
            return AssetFile(name=name, kind=memo[2], sha256=memo[1], size=stat.st_size)
        data = self._read(path, name)
        kind = _kind_of(name, data, self.allowed)
        sha = hashlib.sha256(data).hexdigest()
        self._memo[name] = (stamp, sha, kind)
        return AssetFile(name=name, kind=kind, sha256=sha, size=len(data))

    def load(self, name: str) -> Intake:
        """The asset's bytes, ready for upload (at most ``max_bytes`` of them in memory)."""
        path = self._path(name)
        data = self._read(path, name)
        kind = _kind_of(name, data, self.allowed)
        return Intake(kind, hashlib.sha256(data).hexdigest(), len(data), io.BytesIO(data))

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            raise AssetNotFound(f"no asset is named {name!r}") from None
        self._memo.pop(name, None)

    def _path(self, name: str) -> Path:
        return self.directory / check_name(name)

    def _stat(self, path: Path, name: str) -> os.stat_result:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise AssetNotFound(f"no asset is named {name!r}") from None
        if not path.is_file():
            raise AssetNotFound(f"no asset is named {name!r}")
        if stat.st_size > self.max_bytes:
            raise TooLarge(
                f"asset {name!r} has {stat.st_size} bytes, over the limit of {self.max_bytes}"
            )
        return stat

    def _read(self, path: Path, name: str) -> bytes:
        self._stat(path, name)
        try:
            with path.open("rb") as f:
                data = f.read(self.max_bytes + 1)
        except FileNotFoundError:
            raise AssetNotFound(f"no asset is named {name!r}") from None
        if len(data) > self.max_bytes:
            raise TooLarge(f"asset {name!r} is over the limit of {self.max_bytes} bytes")
        return data


def _kind_of(name: str, data: bytes, allowed: frozenset[Kind]) -> Kind:
    # A PUT checked this already; files dropped into the directory by hand are checked here.
    kind = sniff(data[:HEAD_BYTES])
    if kind is None:
        raise NotAnImage(
            f"asset {name!r} is not a JPG, PNG or GIF image: it looks like "
            f"{describe(data[:HEAD_BYTES])}"
        )
    if kind not in allowed:
        names = ", ".join(sorted(k.name for k in allowed))
        raise TypeNotAllowed(f"asset {name!r} is a {kind.name} image; accepted: {names}")
    return kind
