"""Chapter 2: the byte-level BPE tokenizer (from scratch and Hugging Face `tokenizers`)."""

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsmini_helpers import bpe as B
from dsmini_helpers import constants as C
from dsmini_helpers import tokenizer as T

WORDS = ("the of and a in to is was for on as with by he at from his an were are which this be or has had "
         "tokenizer token byte pair encoding merge vocabulary rare unbelievable München café 1969 2026 "
         "don't it's we'll they've").split()


def make_text(seed: int, n_words: int = 600) -> str:
    """Pseudo-English with punctuation, digits, accents and newlines: many ties, many pre-token kinds."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_words):
        out.append(rng.choice(WORDS))
        r = rng.random()
        if r < 0.08:
            out.append(rng.choice([",", ".", "!", "?!", ";", " (x)", "\n", "\n\n", "  "]))
    return " ".join(out)


@pytest.fixture(scope="module")
def small_text() -> str:
    return make_text(0)


@pytest.fixture(scope="module")
def tok(small_text) -> B.BPETokenizer:
    return B.train_fast(small_text, B.N_BASE + 120)


# ---------- the pieces ----------

def test_get_stats_and_merge_known_answers():
    assert B.get_stats([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert B.merge([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert B.merge([7, 7, 7], (7, 7), 9) == [9, 7]
    assert B.best_pair({(8, 1): 3, (2, 5): 3, (1, 1): 2}) == (2, 5)


def test_byte_ids_match_tokenizers_alphabet_order():
    assert sorted(B.BYTE_ID.values()) == list(range(B.N_SPECIAL, B.N_BASE))
    chars = sorted(B.BYTE_CHAR.values())
    assert [B.BYTE_ID[B.CHAR_BYTE[c]] for c in chars] == list(range(B.N_SPECIAL, B.N_BASE))
    assert B.BYTE_CHAR[ord(" ")] == "Ġ" and B.BYTE_CHAR[ord("\n")] == "Ċ"


def test_pretokenize_matches_bytelevel(small_text):
    from tokenizers import pre_tokenizers

    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    for text in [small_text, "Hi  there!\n\n  x", "it's 3.14 —ünï 🙂\t\tz"]:
        theirs = [p for p, _ in bl.pre_tokenize_str(text)]
        ours = ["".join(B.BYTE_CHAR[b] for b in t.encode()) for t in B.pretokenize(text)]
        assert ours == theirs


# ---------- known answer ----------

@pytest.mark.parametrize("train", [B.train_naive, B.train_fast])
def test_wikipedia_aaabdaaabac(train):
    tok = train("aaabdaaabac", B.N_BASE + 3)
    merged = [(tok.vocab[a], tok.vocab[b]) for a, b in tok.merges]
    assert merged == [(b"a", b"a"), (b"a", b"b"), (b"aa", b"ab")]  # Z=aa, Y=ab, X=ZY
    ids = tok.encode("aaabdaaabac")
    assert [tok.vocab[i] for i in ids] == [b"aaab", b"d", b"aaab", b"a", b"c"]  # XdXac
    assert ids == [263, B.BYTE_ID[ord("d")], 263, B.BYTE_ID[ord("a")], B.BYTE_ID[ord("c")]]
    assert tok.decode(ids) == "aaabdaaabac"


# ---------- round trips ----------

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_round_trip_unicode(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_round_trip_arbitrary_bytes(tok, data):
    ids = tok.encode_bytes(data)
    assert tok.decode_bytes(ids) == data
    assert all(0 <= i < len(tok) for i in ids)


def test_round_trip_invalid_utf8_examples(tok):
    for data in [b"\xff", b"\xc3", b"caf\xc3", b"\xed\xa0\x80", b"\x00\x01 \xfe\xfe\xfe the", b"[SEP]\x80"]:
        assert tok.decode_bytes(tok.encode_bytes(data)) == data
    assert tok.decode(tok.encode_bytes(b"ok\xff")) == "ok\ufffd"


# ---------- special tokens ----------

@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.one_of(st.sampled_from(C.SPECIAL_TOKENS), st.text(max_size=20)), max_size=8))
def test_specials_stay_whole(tok, parts):
    text = "".join(parts)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    n_special = sum(text.count(s) for s in C.SPECIAL_TOKENS)
    assert sum(1 for i in ids if i < B.N_SPECIAL) == n_special


def test_special_ids_and_never_merged():
    text = "[CLS] the [MASK] is [PAD][PAD] [UNK] here [SEP]" * 30 + " the end"
    tok = B.train_fast(text, B.N_BASE + 10)
    assert tok.encode("[PAD][UNK][CLS][SEP][MASK]") == [0, 1, 2, 3, 4]
    assert (C.PAD_ID, C.UNK_ID, C.CLS_ID, C.SEP_ID, C.MASK_ID) == (0, 1, 2, 3, 4)
    merged = [token for i, token in tok.vocab.items() if i >= B.N_BASE]
    assert 0 < len(merged) <= 10 and any(b"the" in t for t in merged)
    assert not any(b"[" in t or b"]" in t or b"MASK" in t or b"PAD" in t for t in merged)  # specials never trained
    assert B.train_naive(text, B.N_BASE + 10).merges == tok.merges


def test_hf_specials_and_post_processor():
    hf = T.train_hf_tokenizer([make_text(1)], 400)
    assert [hf.token_to_id(s) for s in C.SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    enc = hf.encode("the [MASK] of")
    assert enc.ids[0] == C.CLS_ID and enc.ids[-1] == C.SEP_ID and C.MASK_ID in enc.ids


# ---------- save / load ----------

def test_save_load_round_trip(tmp_path, tok, small_text):
    path = tmp_path / "sub" / "bpe.json"
    tok.save(path)
    back = B.BPETokenizer.load(path)
    assert list(back.merges.items()) == list(tok.merges.items())
    assert back.vocab == tok.vocab
    assert back.encode(small_text) == tok.encode(small_text)


def test_load_rejects_foreign_files(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"model": {}}))
    with pytest.raises(ValueError, match="dsmini-bpe"):
        B.BPETokenizer.load(bad)


# ---------- naive == fast == tokenizers ----------

def test_naive_equals_fast(small_text):
    naive = B.train_naive(small_text, B.N_BASE + 150)
    fast = B.train_fast(small_text, B.N_BASE + 150)
    assert list(naive.merges.items()) == list(fast.merges.items())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), extra=st.integers(1, 80))
def test_naive_equals_fast_random(seed, extra):
    text = make_text(seed, n_words=80)
    assert list(B.train_naive(text, B.N_BASE + extra).merges.items()) == \
        list(B.train_fast(text, B.N_BASE + extra).merges.items())


@pytest.mark.parametrize("seed,vocab", [(0, 300), (1, 500), (2, 2000)])
def test_fast_equals_tokenizers(seed, vocab):
    texts = [make_text(seed + 10 * k, 300) for k in range(5)]
    hf = T.train_hf_tokenizer(texts, vocab)
    merges, counts, best = B.learn_merges(B.count_words(texts), vocab)
    ours = B.BPETokenizer(merges)
    assert list(merges) == T.hf_merges(hf)  # same merges, same order
    assert ours.vocab == T.hf_vocab(hf)  # same ids
    assert counts == best  # each merge was a most frequent pair
    probe = make_text(99, 200) + " Zürich 東京 🙂 [MASK]"
    assert ours.encode(probe) == hf.encode(probe, add_special_tokens=False).ids
    # their merges replayed through ours have the same frequencies, step by step
    _, replay_counts, replay_best = B.learn_merges(B.count_words(texts), vocab, forced=T.hf_merges(hf))
    assert replay_counts == counts == replay_best


def test_truncated_tokenizer_equals_smaller_training():
    texts = [make_text(5, 400)]
    big = T.train_hf_tokenizer(texts, 800)
    small = T.train_hf_tokenizer(texts, 300)
    cut = T.truncate_hf_tokenizer(big, 300)
    assert T.hf_merges(cut) == T.hf_merges(small)
    assert cut.get_vocab() == small.get_vocab()
    assert T.bytes_per_token(cut, texts) == pytest.approx(T.bytes_per_token(small, texts))
    assert T.bytes_per_token(big, texts) > T.bytes_per_token(small, texts) > 1.0


def test_tokens_html_escapes_and_shows_ids():
    hf = T.train_hf_tokenizer([make_text(3)], 400)
    out = T.tokens_html(hf, "a <b> & the")
    assert "&lt;" in out and "<b>" not in out.replace("<br>", "")
    assert str(hf.encode("a <b> & the", add_special_tokens=False).ids[0]) in out


# ---------- bad input ----------

@pytest.mark.parametrize("train", [B.train_naive, B.train_fast, T.train_hf_tokenizer])
def test_bad_training_input(train):
    with pytest.raises(ValueError, match="empty corpus"):
        train("", 400)
    with pytest.raises(ValueError, match="empty corpus"):
        train([], 400)
    with pytest.raises(ValueError, match="empty corpus"):
        train(["[MASK]"], 400)
    with pytest.raises(TypeError, match="str"):
        train(123, 400)
    with pytest.raises(TypeError, match="str"):
        train(["ok", b"bytes"], 400)
    with pytest.raises(ValueError, match="261"):
        train("some text", 256)
    with pytest.raises(ValueError, match="261"):
        train("some text", B.N_BASE)
    with pytest.raises(TypeError, match="int"):
        train("some text", "300")


def test_bad_encode_decode_input(tok):
    with pytest.raises(TypeError, match="str"):
        tok.encode(b"bytes")
    with pytest.raises(TypeError, match="str"):
        tok.encode(None)
    with pytest.raises(TypeError, match="bytes"):
        tok.encode_bytes("text")
    with pytest.raises(ValueError, match="unknown token id"):
        tok.decode([10**6])
    with pytest.raises(TypeError, match="int"):
        tok.decode(["a"])
    with pytest.raises(TypeError):
        tok.decode("abc")
    with pytest.raises(TypeError):
        B.pretokenize(42)


# ---------- get_tokenizer: cached, atomic, retrained when the corpus changes ----------

def test_get_tokenizer_caches_and_retrains(tmp_path, monkeypatch):
    monkeypatch.setenv("DSMINI_DATA_DIR", str(tmp_path))
    calls = []
    corpus = {"key": "corpus-a", "texts": [make_text(7)]}
    monkeypatch.setattr(T, "corpus_key", lambda: corpus["key"])

    def texts():
        calls.append(1)
        return corpus["texts"]

    monkeypatch.setattr(T, "train_texts_for_tokenizer", texts)
    tok = T.get_tokenizer(400)
    path = T.tokenizer_path(400)
    assert path == tmp_path / "vocab" / T.tokenizer_key(400) / "tokenizer.json" and path.exists()
    assert T.tokenizer_key(400).startswith("bpe-400-") and T.tokenizer_path() != path
    record = json.loads((path.parent / "artefact.json").read_text())
    assert record["inputs"] == {"vocab_size": 400, "corpus": "corpus-a"}
    assert tok.get_vocab_size() <= 400 and len(calls) == 1
    enc = tok.encode("the token")
    assert enc.ids[0] == C.CLS_ID and enc.ids[-1] == C.SEP_ID

    again = T.get_tokenizer(400)  # cached: no training
    assert len(calls) == 1 and again.encode("the token").ids == enc.ids

    corpus.update(key="corpus-b", texts=[make_text(8)])  # a new corpus: a new key, trained again
    T.get_tokenizer(400)
    assert len(calls) == 2 and T.tokenizer_path(400) != path and path.exists()  # the old one is kept
    assert json.loads((T.tokenizer_path(400).parent / "artefact.json").read_text())["inputs"]["corpus"] == "corpus-b"
    assert not [p for p in path.parent.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left

    transformers = pytest.importorskip("transformers")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(T.tokenizer_path(400)))
    assert fast("the token")["input_ids"] == T.get_tokenizer(400).encode("the token").ids

    with pytest.raises(ValueError):
        T.get_tokenizer(100)


def _get_tokenizer_in_child(vocab_size: int) -> int:
    return T.get_tokenizer(vocab_size).get_vocab_size()


def test_get_tokenizer_trains_once_when_two_processes_ask(tmp_path, monkeypatch):
    import multiprocessing
    import time

    monkeypatch.setenv("DSMINI_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(T, "corpus_key", lambda: "corpus-c")
    log = tmp_path / "trainings.log"

    def texts():
        with open(log, "a") as f:
            f.write("trained\n")
        time.sleep(1.0)  # long enough for the other process to reach the lock
        return [make_text(9)]

    monkeypatch.setattr(T, "train_texts_for_tokenizer", texts)
    ctx = multiprocessing.get_context("fork")  # the children inherit the monkeypatched module
    with ctx.Pool(2) as pool:
        sizes = pool.map(_get_tokenizer_in_child, [400, 400])
    assert sizes[0] == sizes[1] > B.N_BASE
    assert log.read_text().count("trained") == 1
