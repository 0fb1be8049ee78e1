"""Writing outputs so that a killed run or a full disk never leaves a half-written file where a whole
one is expected: each file goes to a temporary file beside its target and is renamed over it once
written and synced, several files at once only after all of them are written (write_all); and
an output path that cannot be written (a full disk included) is refused, as one line, before any
work (check_output). A write that fails anyway (the disk fills up during a run) is one line naming
the file (OutputError). Every JSON file is strict JSON: a number that is not finite (an overflowing
perplexity) is written as null, never as the non-JSON NaN or Infinity (the writer of results.json
records why beside it)."""
from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import Path

from .errors import UserError

MIN_FREE_BYTES = 1 << 20  # less free space than this on an output's disk: refused as full before any work
PROBE_BYTES = 4096  # check_output writes one block (and syncs it): creating an empty file succeeds on a full disk

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp creates 0600 files, outputs get the usual permissions instead


def _write_synced(f, data: bytes) -> None:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def _stage(path: Path, data: str | bytes) -> str:
    """The data in a temporary file beside `path` (text as UTF-8), synced; returns its name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_synced(f, data if isinstance(data, bytes) else data.encode("utf-8"))
        os.chmod(tmp, 0o666 & ~_UMASK)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


class OutputError(UserError, OSError):
    """An output could not be written (full disk, lost permission); the message names the file. Also
    an OSError, for callers that catch those."""

    def __init__(self, message: str, err: int | None = None):
        UserError.__init__(self, message)
        self.errno = err

    def __str__(self) -> str:
        return str(self.args[0])


def _why(e: OSError) -> str:
    return "no space left on device" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e)).lower()


def write_atomic(path: str | os.PathLike, text: str | bytes) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over the target (text as
    UTF-8). A failure leaves the target as it was and raises OutputError naming it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _stage(path, text)
        try:
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OutputError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write {path}: {_why(e)}; the file is as it was before (free some space or "
                          "fix the folder, then run the same command again)", e.errno) from None
    return path


def _make_folder(folder: Path, made: list[Path]) -> None:
    """mkdir -p, remembering each folder it creates (so that a failure can take them away again)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for f in reversed(missing):
        f.mkdir()
        made.append(f)


def write_all(files: dict[str | os.PathLike, str | bytes]) -> list[Path]:
    """Write several files all or nothing: every one goes to a temporary file first, and only when
    all are written and synced are they renamed over their targets. A failure (a full disk) takes
    the temporary files and any folder made for them away again, leaves every target as it was,
    and raises UserError naming the file ("no space left on device")."""
    staged: list[tuple[str, Path]] = []
    made: list[Path] = []
    path = None
    try:
        for path, data in ((Path(p), d) for p, d in files.items()):
            _make_folder(path.parent, made)
            staged.append((_stage(path, data), path))
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException as e:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                pass
        if not isinstance(e, OSError):
            raise
        raise OutputError(f"cannot write {path}: {_why(e)}; nothing was written (free some space or choose "
                          "another place)", e.errno) from None
    return [p for _, p in staged]


def check_output(path: str | os.PathLike, option: str, folder: bool = False) -> None:
    """Refuse, before any work, an output path that cannot be written: a folder where a file goes
    (or a file where a folder goes), a file where a folder would have to be made, a place where
    no file can be created, or a full disk (under MIN_FREE_BYTES free). UserError names the option.
    Leaves nothing behind. The probe is a real file of one synced block (made and removed at once),
    not os.access: root passes os.access even on a read-only mount, and an empty file can be
    created on a full disk."""
    path = Path(path).expanduser()
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{option}: {path} is a file, where a folder goes; give a folder or move the file")
    if not folder and path.is_dir():
        raise UserError(f"{option}: {path} is a folder, where a file goes; give a file name such as "
                        f"{path / 'name'}")
    existing = path.absolute() if folder else path.absolute().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option}: {existing} is a file, so no folder can be made below it for {path}")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".gpt2eval-probe-")
    except OSError as e:
        raise UserError(f"{option}: cannot write {path}: no file can be created in {existing} "
                        f"({(e.strerror or str(e)).lower()}); choose another place") from None
    try:
        os.write(fd, bytes(PROBE_BYTES))
        os.fsync(fd)
        free = free_bytes(existing)
    except OSError as e:
        free = 0 if e.errno in (errno.ENOSPC, errno.EDQUOT) else None
        if free is None:
            raise UserError(f"{option}: cannot write {path}: writing in {existing} fails "
                            f"({(e.strerror or str(e)).lower()}); choose another place") from None
    finally:
        os.close(fd)
        os.unlink(probe)
    if free is not None and free < MIN_FREE_BYTES:
        raise UserError(f"{option}: cannot write {path}: the disk holding {existing} is full ({free:,} bytes "
                        "free); free some space or choose another place")


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Bytes an unprivileged writer may still use on the disk holding `folder` (None: unknown)."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs (Windows): the write probe alone decides
        return None
    return st.f_bavail * st.f_frsize


def write_json(path, obj) -> Path:
    return write_atomic(path, json.dumps(finite(obj), indent=2, ensure_ascii=False, allow_nan=False,
                                         default=_plain) + "\n")


def write_jsonl(path, rows) -> Path:
    return write_atomic(path, "".join(json.dumps(finite(r), ensure_ascii=False, allow_nan=False, default=_plain)
                                      + "\n" for r in rows))


def finite(obj):
    """`obj` with every float that is not finite (NaN, inf, -inf) replaced by None, at any depth
    (numpy and torch scalars first become Python numbers): what strict JSON can hold."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy / torch scalars
        return finite(obj.item())
    return obj


def _plain(obj):
    if hasattr(obj, "item"):  # numpy / torch scalars
        return finite(obj.item())
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
