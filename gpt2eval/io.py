"""Writing outputs so that a killed run or a full disk never leaves a half-written file where a whole
one is expected: each file goes to a temporary file beside its target and is renamed over it once
written and synced, several files at once only after all of them are written (write_all); and
an output path that cannot be written is refused, as one line, before any work (check_output)."""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

from .errors import UserError

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


def write_atomic(path: str | os.PathLike, text: str | bytes) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over the target (text as UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _stage(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
        why = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or str(e)).lower()
        raise UserError(f"cannot write {path}: {why}; nothing was written (free some space or choose "
                        "another place)") from None
    return [p for _, p in staged]


def check_output(path: str | os.PathLike, option: str, folder: bool = False) -> None:
    """Refuse, before any work, an output path that cannot be written: a folder where a file goes
    (or a file where a folder goes), a file where a folder would have to be made, or a place where
    no file can be created. UserError names the option. Creates nothing. The probe is a real file
    (made and removed at once), not os.access: root passes os.access even on a read-only mount."""
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
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{option}: cannot write {path}: no file can be created in {existing} "
                        f"({(e.strerror or str(e)).lower()}); choose another place") from None


def write_json(path, obj) -> Path:
    return write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_plain) + "\n")


def write_jsonl(path, rows) -> Path:
    return write_atomic(path, "".join(json.dumps(r, ensure_ascii=False, default=_plain) + "\n" for r in rows))


def _plain(obj):
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
