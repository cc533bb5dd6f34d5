"""Hand-written plumbing (not exported from a notebook): the artefact store, atomic writes, build-once caching.

Everything a chapter builds for later chapters (corpus, tokenizer, token arrays, checkpoints) is an artefact:
a folder `data/<kind>/<key>/` (or under $DSMINI_DATA_DIR). The key hashes everything the artefact is made
from: the keys of the artefacts it was built from (the tokenizer's key includes the corpus's), its
configuration, and a version of the code that builds it. A changed input gives a new key, so a new folder:
a stale artefact is never returned, and finding a cached one costs a hash of a few small strings and one
`exists()`. Writes go to a temporary name in the same folder and are renamed into place, so a reader who
interrupts a cell never leaves a half-written file; a file lock makes two notebooks that need the same
artefact at once build it only once.

    key = artefact_key("tokens", config={"splits": ["train", "valid"]}, upstream=[tokenizer_key], version=1)
    folder = get_artefact("tokens", key, build)   # build(tmp) writes the files into a fresh folder
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

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


ARTEFACT_FILE = "artefact.json"  # in every artefact folder: its kind, key and what the key was made of


def artefact_key(kind: str, *, version: str | int, config: Any = None, upstream: Sequence[str] = (),
                 label: str = "") -> str:
    """`label-` + 16 hex digits of sha256 over the kind, code version, upstream keys and config (as JSON).

    `config` must be JSON-serialisable (tuples count as lists); dict order does not matter. The label only
    makes the folder name readable ("offline-v3-1f0c..."); the hash alone tells artefacts apart.
    """
    blob = json.dumps({"kind": kind, "version": str(version), "upstream": list(upstream), "config": config},
                      sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
    return f"{label}-{digest}" if label else digest


def code_version(*modules: str) -> str:
    """sha256 (16 hex digits) of the code of `modules` ("dsmini_helpers.model", ...), comments ignored.

    A key that includes it changes whenever the code that builds the artefact changes, and only then: the
    syntax tree is hashed, so a reworded comment or a notebook cell split in two (a new header comment in
    the generated module) keeps the cached corpus, tokenizer and checkpoints.
    """
    h = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"no source file for module {name!r}")
        tree = ast.dump(ast.parse(Path(spec.origin).read_text(encoding="utf-8")))
        h.update(name.encode() + b"\0" + tree.encode())
    return h.hexdigest()[:16]


def artefact_dir(kind: str, key: str) -> Path:
    """Where the artefact `kind`/`key` lives (it may not exist yet): data/<kind>/<key>."""
    return data_dir(kind) / key


def get_artefact(kind: str, key: str, build: Callable[[Path], None], *, inputs: Any = None) -> Path:
    """The folder of artefact `kind`/`key`, calling `build(folder)` first if it does not exist.

    `build` writes its files into the fresh folder it is given; the store adds `artefact.json` (kind, key,
    `inputs`) and renames the folder into place under a lock, so it is built once and never half-written.
    """
    def build_folder(tmp: Path) -> None:
        tmp.mkdir()
        build(tmp)
        record = {"kind": kind, "key": key, "inputs": inputs}
        (tmp / ARTEFACT_FILE).write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")

    return build_once(artefact_dir(kind, key), build_folder)
