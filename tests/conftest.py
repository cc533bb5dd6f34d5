"""Shared test set-up: offline, ci profile, and CI's data folder (never the reader's data/) unless one is given."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports `datasets`
os.environ.setdefault("DSMINI_PROFILE", "ci")
os.environ.setdefault("DSMINI_DATA", "offline")
# The Makefile's CI_DATA_DIR: `make unit`, `make notebooks` and `make book-ci` pass it; this is for a plain `pytest`.
os.environ.setdefault("DSMINI_DATA_DIR", str(Path(__file__).resolve().parents[1] / "_build" / "ci-data"))


@pytest.fixture
def private_store(tmp_path, monkeypatch):
    """A data folder of the test's own for checkpoints and runs; the corpus, tokenizer and token arrays are
    the session's (built once if missing), linked in."""
    # imported here, not at the top: the environment above must be set before dsmini_helpers loads
    from dsmini_helpers.batches import get_token_arrays
    from dsmini_helpers.cache import data_dir

    get_token_arrays()
    for kind in ("processed", "vocab", "tokens"):
        (tmp_path / kind).symlink_to(data_dir(kind), target_is_directory=True)
    monkeypatch.setenv("DSMINI_DATA_DIR", str(tmp_path))
    return tmp_path
