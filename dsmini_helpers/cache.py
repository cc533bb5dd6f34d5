"""Hand-written plumbing (not exported from a notebook): where artefacts live, atomic writes, build-once caching.

Everything a chapter builds for later chapters (corpus, tokenizer, token arrays, checkpoints) is cached under
`data/` (or $DSMINI_DATA_DIR). Writes go to a temporary name in the same folder and are renamed into place, so a
reader who interrupts a cell never leaves a half-written file; a file lock makes two notebooks that need the
same artefact at once build it only once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir(*parts: str) -> Path:
    """`data/` at the repository root (or $DSMINI_DATA_DIR), joined with `parts`; the folder is created."""
    root = Path(os.environ.get("DSMINI_DATA_DIR") or REPO_ROOT / "data")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not supported on every OS / filesystem
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path next to `path`; on success it is fsynced and renamed onto `path`.

    On an exception the temporary file is removed and `path` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to `path`; on success it replaces `path` as a whole.

    Used for artefacts made of several files (a checkpoint: weights + config + tokenizer): readers see either
    the old folder or the complete new one. The swap renames the old folder aside, then the new one in.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_lock(path: str | os.PathLike, timeout: float = -1) -> FileLock:
    """An inter-process lock guarding `path` (the lock file is `path` + `.lock`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock", timeout=timeout)


def build_once(path: str | os.PathLike, build: Callable[[Path], None]) -> Path:
    """Return `path`, first calling `build(tmp)` to create it if missing, under a lock, atomically.

    `build` writes the artefact to the temporary path it is given (a file path; it may create a folder there
    instead). Two processes asking at once build it once; an interrupted build leaves nothing at `path`.
    """
    path = Path(path)
    if path.exists():
        return path
    with file_lock(path):
        if path.exists():  # another process built it while we waited
            return path
        parent = path.parent
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".build", dir=parent)) / path.name
        try:
            build(tmp)
            if not tmp.exists():
                raise RuntimeError(f"build function did not create {tmp}")
            os.replace(tmp, path)
            _fsync_dir(parent)
        finally:
            shutil.rmtree(tmp.parent, ignore_errors=True)
    return path
