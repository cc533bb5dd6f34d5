"""The artefact store: a key hashes an artefact's inputs; a cached artefact is found without reading them;
a changed input gives a new artefact, never a stale one."""

import json

import numpy as np
import pytest

from dsmini_helpers import batches, cache, data, profiles, runs
from dsmini_helpers import tokenizer as T


def test_key_changes_with_every_input():
    base = dict(version=1, config={"lr": 1e-3, "steps": [1, 2]}, upstream=["tok-a"])
    key = cache.artefact_key("checkpoints", **base)
    assert key == cache.artefact_key("checkpoints", **{**base, "config": {"steps": (1, 2), "lr": 1e-3}})
    assert key != cache.artefact_key("checkpoints", **{**base, "config": {"lr": 2e-3, "steps": [1, 2]}})
    assert key != cache.artefact_key("checkpoints", **{**base, "upstream": ["tok-b"]})
    assert key != cache.artefact_key("checkpoints", **{**base, "version": 2})
    assert key != cache.artefact_key("tokens", **base)
    assert cache.artefact_key("checkpoints", **base, label="ci").endswith("-" + key)


def test_code_version_follows_the_source(tmp_path, monkeypatch):
    module = tmp_path / "toy_module_for_store.py"
    module.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = cache.code_version("toy_module_for_store")
    module.write_text("# the header of another notebook cell\nX = 1  # a reworded comment\n\n")
    assert cache.code_version("toy_module_for_store") == before  # comments and layout are not code
    module.write_text("X = 2\n")
    assert cache.code_version("toy_module_for_store") != before
    with pytest.raises(ValueError, match="no source file"):
        cache.code_version("no_such_module_for_store")


def test_get_artefact_builds_once_and_records_its_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("DSMINI_DATA_DIR", str(tmp_path))
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "x.txt").write_text("x")

    key = cache.artefact_key("toy", version=1, config={"a": 1})
    path = cache.get_artefact("toy", key, build, inputs={"a": 1})
    assert path == tmp_path / "toy" / key and (path / "x.txt").read_text() == "x" and len(calls) == 1
    assert json.loads((path / "artefact.json").read_text()) == {"kind": "toy", "key": key, "inputs": {"a": 1}}
    assert cache.get_artefact("toy", key, build) == path and len(calls) == 1
    with pytest.raises(ZeroDivisionError):
        cache.get_artefact("toy", "broken", lambda folder: 1 / 0)
    assert not cache.artefact_dir("toy", "broken").exists()  # a failed build leaves nothing behind


def changed_run(**train):
    """A replacement for Profile.experiment whose `train:` section has `train` changed."""
    read = profiles.Profile.experiment

    def experiment(profile):
        found = read(profile)
        return {**found, "train": {**found["train"], **train}}

    return experiment


def test_a_changed_config_code_or_tokenizer_gives_a_new_checkpoint_key(monkeypatch):
    kind, key, cfg = runs.run_artefact("ci")
    assert (kind, runs.run_artefact("ci")[1]) == ("checkpoints", key)  # stable
    assert runs.run_artefact("ci", "mask15")[:2] != (kind, key)
    with monkeypatch.context() as m:
        m.setattr(profiles.Profile, "experiment", changed_run(lr=cfg.lr * 2))
        assert runs.run_artefact("ci")[1] != key
    with monkeypatch.context() as m:
        m.setattr(runs, "code_version", lambda *modules: "another version of the code")
        assert runs.run_artefact("ci")[1] != key
    with monkeypatch.context() as m:
        m.setattr(runs, "tokenizer_key", lambda: "bpe-20000-another")
        assert runs.run_artefact("ci")[1] != key
    assert runs.run_artefact("ci")[1] == key


def test_cached_artefacts_are_found_without_reading_the_corpus(monkeypatch):
    first = batches.get_token_arrays(T.get_tokenizer())  # built (or found) the ordinary way

    def forbidden(*args, **kwargs):
        raise AssertionError("finding a cached artefact must not read the corpus")

    monkeypatch.setattr(data, "load_documents", forbidden)
    monkeypatch.setattr(batches, "load_texts", forbidden)
    monkeypatch.setattr(T, "train_texts_for_tokenizer", forbidden)
    again = batches.get_token_arrays(T.get_tokenizer())
    assert again["train"].filename == first["train"].filename
    assert np.array_equal(again["valid"][:100], first["valid"][:100])


def test_another_tokenizer_gets_its_own_token_arrays(tmp_path, monkeypatch):
    for kind in ("processed", "vocab"):  # the session's corpus and tokenizer; tokens of our own
        (tmp_path / kind).symlink_to(cache.data_dir(kind), target_is_directory=True)
    monkeypatch.setenv("DSMINI_DATA_DIR", str(tmp_path))
    small = T.train_hf_tokenizer(data.load_texts("valid")[:50], 300)
    book = batches.get_token_arrays(T.get_tokenizer(), splits=("valid",))
    other = batches.get_token_arrays(small, splits=("valid",))
    assert other["valid"].filename != book["valid"].filename
    assert int(other["valid"].max()) < 300 <= int(book["valid"].max())


def test_get_checkpoint_trains_again_when_the_config_changes(private_store, monkeypatch):
    first = runs.get_checkpoint("ci")
    with monkeypatch.context() as m:
        m.setattr(profiles.Profile, "experiment", changed_run(max_steps=3))
        second = runs.get_checkpoint("ci")
    assert second != first and first.exists()  # a new run; the old one is neither returned nor touched
    assert runs.get_checkpoint("ci") == first
