"""Upstream archives that are not on the hub (enwik8, text8, One Billion Word): find, download, verify.

A `Remote` is one published file with its size and checksum (each with the place it is published).
`obtain` looks for it under --data-dir, then in the download cache, and only then downloads it
(stdlib urllib) into the cache: to a `.part` file, hashed on the way, renamed into place only when
size and checksum match, so a failed download never leaves a file that looks complete. Every
failure is one line that names the file, where it goes and what to do.

The cache is $GPT2EVAL_CACHE_DIR, else $XDG_CACHE_HOME/gpt2eval, else ~/.cache/gpt2eval; files sit
under `data/<relpath>`. With HF_HUB_OFFLINE, HF_DATASETS_OFFLINE or GPT2EVAL_OFFLINE set, nothing is
downloaded (file:// URLs, which read a local file, excepted).
"""
from __future__ import annotations

import hashlib
import os
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..api.data import KNOWN_SHA256
from ..errors import DataError

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "GPT2EVAL_OFFLINE")
BLOCK = 1 << 20


@dataclass(frozen=True)
class Remote:
    relpath: str          # where it sits under --data-dir and under the cache ("enwik8/enwik8.zip")
    url: str
    size: int
    sha1: str = ""        # when no SHA-256 is published
    md5: str = ""
    source: str = ""      # where size and checksum are published
    sha256: str = ""      # default: data.KNOWN_SHA256[relpath]

    def __post_init__(self):
        if not self.sha256:
            object.__setattr__(self, "sha256", KNOWN_SHA256.get(self.relpath, ""))

    def checksums(self) -> dict[str, str]:
        return {k: v for k, v in (("sha256", self.sha256), ("sha1", self.sha1), ("md5", self.md5)) if v}


def cache_dir() -> Path:
    root = os.environ.get("GPT2EVAL_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "gpt2eval"


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARIABLES)


def hashes_of(path: Path, names) -> dict[str, str]:
    hs = {n: hashlib.new(n) for n in names}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            for h in hs.values():
                h.update(block)
    return {n: h.hexdigest() for n, h in hs.items()}


def verify(path: Path, remote: Remote) -> dict:
    """Size and every published checksum must match; returns the provenance record."""
    size = path.stat().st_size
    if size != remote.size:
        raise DataError(f"{path}: {size:,} bytes but {remote.url} has {remote.size:,} ({remote.source}); "
                        "the file is truncated or a different version; delete it and download it again")
    got = hashes_of(path, set(remote.checksums()) | {"sha256"})
    for name, expected in remote.checksums().items():
        if got[name] != expected:
            raise DataError(f"{path}: {name} is {got[name]} but {remote.url}'s is {expected} ({remote.source}); "
                            "delete the file and download it again")
    return {"kind": "file", "path": str(path.resolve()), "url": remote.url, "sha256": got["sha256"],
            "verified": True, "checksums_from": remote.source, **{k: got[k] for k in remote.checksums()}}


def obtain(remote: Remote, data_dir: Path | None) -> tuple[Path, dict]:
    """The verified local file and its provenance: --data-dir, else the cache, else a download."""
    cached = cache_dir() / "data" / remote.relpath
    for path in ([data_dir / remote.relpath] if data_dir else []) + [cached]:
        if path.is_file():
            return path, verify(path, remote)
    where = f"neither at {data_dir / remote.relpath} (--data-dir) nor" if data_dir else "not"
    if offline() and not remote.url.startswith("file:"):
        variables = ", ".join(v for v in OFFLINE_VARIABLES if os.environ.get(v))
        raise DataError(f"{remote.relpath} is {where} in the cache at {cached}, and downloads are off "
                        f"({variables}): download {remote.url} to {cached}, or unset {variables}")
    return cached, download(remote, cached)


def download(remote: Remote, dest: Path) -> dict:
    """Download, verify, rename into place; returns the provenance record of `dest`."""
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(remote.url, timeout=60) as response:
            # announced once the server answers, so that a failure stays a single line
            print(f"downloading {remote.url} ({remote.size / 1e6:,.0f} MB) to {dest}", file=sys.stderr)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(part, "wb") as f:
                for block in iter(lambda: response.read(BLOCK), b""):
                    f.write(block)
    except (OSError, ValueError) as e:  # URLError, HTTPError, timeouts and disk errors are OSErrors
        part.unlink(missing_ok=True)
        raise DataError(f"download of {remote.url} to {dest} failed ({type(e).__name__}: {e}); "
                        f"download it yourself to {dest} (or to {remote.relpath} under --data-dir)") from None
    try:
        source = verify(part, remote)
    except DataError as e:
        part.unlink(missing_ok=True)
        raise DataError(f"download of {remote.url} to {dest} gave a different file, removed ({e})") from None
    part.replace(dest)
    return {**source, "path": str(dest.resolve())}


def md5_checked(path: Path, md5: str) -> Path:
    got = hashes_of(path, ["md5"])["md5"]
    if got != md5:
        raise DataError(f"{path}: md5 is {got} but the upstream file's is {md5}; delete it and obtain it again")
    return path


def extract_member(archive: Path, member: str, dest: Path, md5: str) -> Path:
    """One member of a .tar.gz archive, written to `dest` (via a .part file) and md5-checked."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with tarfile.open(archive, "r:gz") as tar, open(part, "wb") as out:
            src = tar.extractfile(member)
            if src is None:
                raise KeyError(member)
            for block in iter(lambda: src.read(BLOCK), b""):
                out.write(block)
        got = hashes_of(part, ["md5"])["md5"]
        if got != md5:
            raise DataError(f"{archive}: its {member} has md5 {got} but the upstream file's is {md5}; delete the "
                            "archive and download it again")
    except KeyError:
        part.unlink(missing_ok=True)
        raise DataError(f"{archive}: the archive has no member {member}; re-download it") from None
    except (tarfile.TarError, OSError) as e:
        part.unlink(missing_ok=True)
        raise DataError(f"{archive}: cannot extract {member} to {dest} ({e}); delete the archive and download it "
                        "again") from None
    except DataError:
        part.unlink(missing_ok=True)
        raise
    part.replace(dest)
    return dest
