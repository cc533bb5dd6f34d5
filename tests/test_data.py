"""Chapter 1 (the corpus): wikitext cleaning, dedup, the stable split, the manifest, offline/online choice."""

import hashlib
import json
import os
import subprocess
import sys
import types

import pytest

from dsmini_helpers import cleaning, data

WIKITEXT = """'''Alpha''' is a [[Greek alphabet|letter]] used in [[a|b]] science.<ref>{{cite web |url=http://x.org
|title=Alpha facts |publisher=Nobody}}</ref> It is widely known among students of mathematics.{{citation needed}}
[[File:Alpha.svg|thumb|The letter [[alpha]] in a ''caption'' here]]
{| class="wikitable"
|-
! Name !! Value
|-
| tablecell || 42
|}
The ''second'' paragraph has a named ref.<ref name="n1" /> And an [http://example.org external link] too.
[[Category:Letters]]
"""


@pytest.fixture(scope="module")
def corpus_dir():
    """The shared offline corpus (built once, cached under data/ or $DSMINI_DATA_DIR)."""
    return data.get_corpus_dir("offline")


# --- cleaning --------------------------------------------------------------------------------------------------


def test_strip_wikitext_fixture_loses_all_markup():
    text = cleaning.strip_wikitext(WIKITEXT)
    for markup in ("{{", "}}", "<ref", "</ref", "[[", "]]", "'''", "''", "{|", "|}", "|-", "File:", "thumb",
                   "Category:", "http://", "cite web", "tablecell", "caption"):
        assert markup not in text, (markup, text)
    words = text.split()
    assert "b" in words  # [[a|b]] keeps its label
    assert "letter" in words and "Alpha" in words and "external link" in text
    assert "()" not in text and " ." not in text
    assert "It is widely known among students of mathematics." in text


def test_boilerplate_sections_dropped_even_when_the_parse_tree_nests_them():
    wikitext = ("Intro with an ''unbalanced italic quote that the parser carries on.\n\n== History ==\n"
                "The history section is long enough to keep as prose.\n\n==References==\n{{Reflist}}\n"
                "===Sub===\n* Gordon, Uri, Anarchy Alive!, London: Pluto Press, 2007.\n\n==External links==\n"
                "* [http://example.org Official site]\n")
    text = cleaning.strip_wikitext(wikitext)
    assert "The history section is long enough to keep as prose." in text and "History" not in text
    assert "Anarchy Alive" not in text and "Official site" not in text
    assert cleaning.drop_sections("a\n==See also==\nb\n==Later==\nc\n") == "a\n==Later==\nc\n"


def test_clean_text_normalizes_and_drops_short_lines():
    raw = "Cafe\u0301 society  grew\tquickly in the\u00a0city of Paris.\n\nHistory\n"
    raw += "\u200bSee also: something here now\n"
    text = cleaning.clean_text(raw)
    assert text == "Café society grew quickly in the city of Paris."  # NFC: e + combining accent -> é
    assert cleaning.normalize_text("a\u200bb  c\n\n\nd") == "ab c\nd"


def test_real_dump_keeps_no_markup(corpus_dir):
    docs = [d for split in ("train", "valid") for d in data.load_documents(split, mode="offline")]
    dump = [d for d in docs if d["source"] == "enwiki-dump"]
    assert len(dump) > 90
    for doc in dump:
        for markup in ("{{", "<ref", "[[File:", "[[Image:", "]]", "'''"):
            assert markup not in doc["text"], (doc["title"], markup)


def test_strip_wikitext_type_error():
    with pytest.raises(TypeError, match="str"):
        cleaning.strip_wikitext(b"bytes")


# --- dedup --------------------------------------------------------------------------------------------------------


def test_dedup_removes_injected_duplicates_and_is_idempotent():
    base = [{"id": str(i), "text": f"document number {i} has its own words"} for i in range(50)]
    injected = [{"id": "x1", "text": "DOCUMENT number 3  has its own\nwords"},  # case + whitespace variants
                {"id": "x2", "text": base[7]["text"]}, {"id": "x3", "text": base[7]["text"] + " "}]
    kept, removed = cleaning.deduplicate(base + injected)
    assert removed == 3 and kept == base  # first occurrence wins, order kept
    again, removed_again = cleaning.deduplicate(kept)
    assert again == kept and removed_again == 0


def test_dedup_key_is_normalized_sha256():
    assert cleaning.dedup_key("A  b\nC") == cleaning.dedup_key("a b c") == hashlib.sha256(b"a b c").hexdigest()
    assert cleaning.dedup_key("a b c") != cleaning.dedup_key("a b d")


# --- split --------------------------------------------------------------------------------------------------------

_SPLIT_SCRIPT = (
    "import hashlib; from dsmini_helpers.data import split_of; "
    "s = ''.join(split_of(f'doc-{i}')[0] for i in range(20000)); "
    "print(hashlib.sha256(s.encode()).hexdigest(), s.count('v'))"
)


def test_split_same_across_runs_and_hash_seeds():
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", _SPLIT_SCRIPT], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        outputs.add(proc.stdout.strip())
    assert len(outputs) == 1
    here = "".join(data.split_of(f"doc-{i}")[0] for i in range(20000))
    assert hashlib.sha256(here.encode()).hexdigest() == outputs.pop().split()[0]


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
def test_split_near_the_asked_fraction(fraction):
    n = 20000
    valid = sum(data.split_of(f"id{i}", fraction) == "valid" for i in range(n))
    assert abs(valid / n - fraction) < 0.01  # binomial sd <= 0.0036 at n=20000


def test_split_rejects_bad_fraction():
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="valid_fraction"):
            data.split_of("x", bad)


def test_corpus_split_disjoint_and_consistent(corpus_dir):
    train = data.load_documents("train", mode="offline")
    valid = data.load_documents("valid", mode="offline")
    train_ids, valid_ids = {d["id"] for d in train}, {d["id"] for d in valid}
    assert len(train_ids) == len(train) and len(valid_ids) == len(valid)  # ids unique
    assert not train_ids & valid_ids
    assert all(data.split_of(i) == "train" for i in train_ids) and all(data.split_of(i) == "valid" for i in valid_ids)
    valid += [d for name in data.source_valid_names("offline") for d in data.load_documents(f"valid:{name}", "offline")]
    valid_ids = {d["id"] for d in valid}
    assert not train_ids & valid_ids and all(data.split_of(i) == "valid" for i in valid_ids)
    assert 0.03 < len(valid) / (len(train) + len(valid)) < 0.07
    texts = [d["text"] for d in train + valid]
    assert len({cleaning.dedup_key(t) for t in texts}) == len(texts)  # no duplicates left


# --- manifest and API ---------------------------------------------------------------------------------------------


def test_manifest_matches_files(corpus_dir):
    manifest = json.loads((corpus_dir / "manifest.json").read_text())
    for split in ("train", "valid", "valid_sources"):
        raw = (corpus_dir / f"{split}.jsonl").read_bytes()
        assert hashlib.sha256(raw).hexdigest() == manifest["sha256"][f"{split}.jsonl"]
        lines = raw.decode().splitlines()
        assert len(lines) == manifest["documents"][split]
        assert set(json.loads(lines[0])) == {"id", "source", "title", "text"}
    assert {"enwiki-dump", "wiki-summaries"} <= set(manifest["sources"])
    assert all("CC BY-SA" in manifest["sources"][s]["license"] for s in ("enwiki-dump", "wiki-summaries"))
    assert all(s["license"] for s in manifest["sources"].values())
    assert sum(s["documents"] for s in manifest["sources"].values()) == sum(manifest["documents"].values())
    first_valid = (corpus_dir / "valid.jsonl").read_text().splitlines()[0]
    assert data.load_texts("valid", mode="offline")[0] == json.loads(first_valid)["text"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="split"):
        data.load_texts("test")
    with pytest.raises(ValueError, match="mode"):
        data.get_corpus_dir("sometimes")
    with pytest.raises(FileNotFoundError, match="not installed"):
        data.package_file("no_such_package_dsmini", "x.json")


def test_build_corpus_counts(tmp_path):
    words = "the quick brown fox jumps over the lazy dog again and again in the park"
    raw = [{"id": f"t:{i}", "source": "toy", "title": str(i), "raw": f"{words} number {i}. {words}", "markup": "plain"}
           for i in range(30)]
    raw += [{"id": "t:dup", "source": "toy", "title": "dup", "raw": raw[0]["raw"].upper(), "markup": "plain"},
            {"id": "t:short", "source": "toy", "title": "short", "raw": "too short to keep", "markup": "plain"}]
    manifest = data.build_corpus(tmp_path / "c", raw, {"toy": {"license": "test"}}, valid_fraction=0.3)
    assert manifest["duplicates_removed"] == 1 and manifest["too_short_removed"] == 1
    assert sum(manifest["documents"].values()) == manifest["sources"]["toy"]["documents"] == 30


# --- offline / online choice -------------------------------------------------------------------------------------

_AUTO_SCRIPT = (
    "import sys, time; from dsmini_helpers.data import get_corpus_dir, load_texts; "
    "t = time.perf_counter(); texts = load_texts('train'); dt = time.perf_counter() - t; "
    "print(get_corpus_dir().name, len(texts), 'datasets' in sys.modules, f'{dt:.3f}')"
)


def test_auto_with_hub_offline_returns_offline_data_fast(corpus_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DSMINI_DATA": "auto"}
    proc = subprocess.run([sys.executable, "-c", _AUTO_SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "DSMINI_DATA=auto: using the offline corpus because HF_HUB_OFFLINE is set."
    name, n, datasets_loaded, seconds = lines[-1].split()
    assert name == corpus_dir.name and int(n) > 1000
    assert datasets_loaded == "False"  # the offline path never imports `datasets`
    assert float(seconds) < 5.0


def _fake_datasets(monkeypatch, load_dataset):
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))


@pytest.mark.parametrize("error", [ConnectionError("no route to hub"), RuntimeError("Dataset scripts are no longer"),
                                   OSError("DatasetNotFoundError")])
def test_auto_falls_back_when_load_dataset_raises(corpus_dir, monkeypatch, capsys, error):
    calls = []

    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        raise error

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DSMINI_DATA", "auto")
    monkeypatch.setattr(data, "_AUTO_CHOICE", {})
    monkeypatch.setattr(data, "hub_reachable", lambda *a, **k: (True, "pretend the hub answers"))
    _fake_datasets(monkeypatch, load_dataset)
    path = data.get_corpus_dir()
    assert calls and path == corpus_dir
    out = capsys.readouterr().out
    assert f"using the offline corpus because the online load failed ({type(error).__name__}" in out
    assert len(out.strip().splitlines()) == 1
    assert data.get_corpus_dir() == path and len(calls) == 1  # decided once per process: no second try, no line
    assert capsys.readouterr().out == ""
    assert not [p for p in path.parent.iterdir() if p.name.startswith("online") and not p.name.endswith(".lock")]


def test_auto_falls_back_when_hub_unreachable(corpus_dir, monkeypatch, capsys):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(data, "_AUTO_CHOICE", {})
    monkeypatch.setattr(data, "hub_reachable", lambda *a, **k: (False, "huggingface.co:443 did not answer"))
    _fake_datasets(monkeypatch, lambda *a, **k: pytest.fail("load_dataset must not be called"))
    assert data.get_corpus_dir("auto") == corpus_dir
    assert "because huggingface.co:443 did not answer" in capsys.readouterr().out


def test_hub_probe_fails_for_a_closed_port():
    ok, why = data.hub_reachable("127.0.0.1", 9, timeout=1.0)  # discard port: nothing listens
    assert not ok and "127.0.0.1:9" in why


def test_online_fails_loudly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        data.get_corpus_dir("online")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)

    def load_dataset(*args, **kwargs):
        raise ConnectionError("no route to hub")

    _fake_datasets(monkeypatch, load_dataset)
    with pytest.raises(RuntimeError, match="DSMINI_DATA=online"):
        data.get_corpus_dir("online")


def test_online_path_streams_only_what_the_profile_asks(tmp_path, monkeypatch):
    """Our side of the online path, with a fake hub: streaming=True, the configured ids, `n` docs per source."""
    monkeypatch.setenv("DSMINI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DSMINI_WEB_DATASET", "someone/web-parquet")
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    calls, served = [], []

    def load_dataset(path, name=None, split=None, streaming=False):
        calls.append((path, name, split, streaming))

        def rows():
            for i in range(10_000):
                served.append(path)
                yield {"id": str(i), "title": f"T{i}", "text": f"{path} document {i} " + "with enough words " * 8}

        return rows()

    _fake_datasets(monkeypatch, load_dataset)
    n = data.get_profile().sizes("data").online_docs_per_source
    path = data.get_corpus_dir("online")
    manifest = json.loads((path / "manifest.json").read_text())
    assert calls == [("wikimedia/wikipedia", "20231101.en", "train", True),
                     ("someone/web-parquet", None, "train", True)]
    assert manifest["sources"]["wikipedia"]["documents"] == manifest["sources"]["web"]["documents"] == n
    assert len(served) == 2 * n  # stopped streaming once it had enough
    assert path.name.startswith(f"online-{n}-")
