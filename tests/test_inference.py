"""Chapter 8: generation by iterative unmasking on toys with known answers, fill-mask, pooling, LexRank, and the
`Model` object on the real `ci` checkpoint of chapter 7."""

import threading

import pytest
import torch

from dsmini_helpers.generation import block_spans, diffusion_generate, sample_tokens, steps_per_block, transfer_schedule
from dsmini_helpers.inference import (
    Model,
    cls_pool,
    context_length,
    fill_mask_candidates,
    glue_masks,
    l2_normalize,
    lexrank,
    mean_pool,
    split_sentences,
    top_sentences,
)

MASK = 0
V = 12


def fixed_logits(targets, confidences):
    """A logits_fn whose slot i always predicts targets[i] with probability confidences[i] (rest spread evenly)."""
    targets, confidences = torch.tensor(targets), torch.tensor(confidences)

    def fn(ids):
        B, T = ids.shape
        probs = ((1 - confidences) / (V - 2))[:, None].repeat(1, V)  # (T, V); MASK gets the same small share
        probs[torch.arange(T), targets] = confidences
        return probs.log()[None].expand(B, T, V).clone()

    return fn


# --- schedules ---------------------------------------------------------------------------------------------------
def test_transfer_schedule_known_answers():
    assert transfer_schedule(10, 4) == [3, 3, 2, 2]
    assert transfer_schedule(4, 4) == [1, 1, 1, 1]
    assert transfer_schedule(2, 5) == [1, 1]
    assert transfer_schedule(7, 1) == [7]
    assert transfer_schedule(0, 3) == []
    with pytest.raises(ValueError):
        transfer_schedule(3, 0)


def test_blocks_and_steps_per_block():
    assert block_spans(2, 6, None) == [(2, 8)]
    assert block_spans(2, 6, 4) == [(2, 6), (6, 8)]
    assert steps_per_block(8, 3) == [3, 3, 2]
    assert steps_per_block(2, 4) == [1, 1, 1, 1]  # every block gets at least one step
    with pytest.raises(ValueError):
        block_spans(0, 4, 0)


def test_sample_tokens_greedy_topk_and_seed():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]])
    tokens, conf = sample_tokens(logits)
    assert tokens.tolist() == [1, 0]
    torch.testing.assert_close(conf, logits.softmax(-1).max(-1).values)
    tokens, _ = sample_tokens(logits, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(0))
    assert tokens.tolist() == [1, 0]  # top-1 sampling is argmax
    a = sample_tokens(logits.repeat(50, 1), 2.0, None, torch.Generator().manual_seed(7))[0]
    b = sample_tokens(logits.repeat(50, 1), 2.0, None, torch.Generator().manual_seed(7))[0]
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        sample_tokens(logits, temperature=-1.0)
    with pytest.raises(ValueError):
        sample_tokens(logits, temperature=float("nan"))
    tokens, conf = sample_tokens(logits, temperature=1e-308)  # found by schemathesis: used to overflow to NaN
    assert tokens.tolist() == [1, 0] and torch.isfinite(conf).all()


def test_sampling_frequencies_follow_softmax():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]])).repeat(4000, 1)
    tokens, _ = sample_tokens(logits, temperature=1.0, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens, minlength=3) / 4000
    torch.testing.assert_close(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.03, rtol=0)


# --- generation --------------------------------------------------------------------------------------------------
def test_one_shot_is_argmax_everywhere():
    fn = fixed_logits([3, 4, 5, 6, 7], [0.5, 0.9, 0.2, 0.8, 0.4])
    g = diffusion_generate(fn, torch.tensor([[9]]), 4, steps=1, mask_id=MASK)
    assert g.ids.tolist() == [[9, 4, 5, 6, 7]]
    assert g.commit_step.tolist() == [[0, 0, 0, 0]]


def test_low_confidence_commits_in_order_of_confidence():
    conf = [0.5, 0.9, 0.2, 0.8, 0.4, 0.6]
    fn = fixed_logits([2, 3, 4, 5, 6, 7], conf)
    g = diffusion_generate(fn, torch.empty(1, 0, dtype=torch.long), 6, steps=6, mask_id=MASK, keep_snapshots=True)
    assert g.ids.tolist() == [[2, 3, 4, 5, 6, 7]]
    order = sorted(range(6), key=lambda i: -conf[i])
    assert [g.commit_step[0, i].item() for i in order] == list(range(6))
    # each snapshot has exactly one more token than the one before
    assert [int((s == MASK).sum()) for s in g.snapshots] == [5, 4, 3, 2, 1, 0]


def test_two_per_step_and_prompt_suffix_untouched():
    fn = fixed_logits([2, 3, 4, 5, 6, 7, 8], [0.1, 0.2, 0.9, 0.8, 0.3, 0.7, 0.5])
    prompt, suffix = torch.tensor([[10, 11]]), torch.tensor([[1]])
    g = diffusion_generate(fn, prompt, 4, steps=2, mask_id=MASK, suffix=suffix)
    assert g.ids[0, :2].tolist() == [10, 11] and g.ids[0, -1].item() == 1
    assert g.new_ids.tolist() == [[4, 5, 6, 7]]
    assert g.commit_step.tolist() == [[0, 0, 1, 1]]  # slots 2, 3 (0.9, 0.8) first, then 4, 5 (0.3, 0.7)


def test_blocks_fill_left_to_right():
    conf = [0.1, 0.2, 0.3, 0.4, 0.95, 0.9, 0.85, 0.8]  # the right half is more confident...
    fn = fixed_logits(list(range(2, 10)), conf)
    g = diffusion_generate(fn, torch.empty(1, 0, dtype=torch.long), 8, steps=8, mask_id=MASK, block_length=4)
    steps = g.commit_step[0]
    assert steps[:4].max() < steps[4:].min()  # ... but the left block is finished first
    assert steps[:4].tolist() == [3, 2, 1, 0]  # within a block, most confident first


def test_random_remasking_is_seeded_and_orders_differ():
    fn = fixed_logits(list(range(2, 10)), [0.9] * 8)
    empty = torch.empty(1, 0, dtype=torch.long)
    a = diffusion_generate(fn, empty, 8, steps=8, mask_id=MASK, remasking="random", seed=1).commit_step
    b = diffusion_generate(fn, empty, 8, steps=8, mask_id=MASK, remasking="random", seed=1).commit_step
    c = diffusion_generate(fn, empty, 8, steps=8, mask_id=MASK, remasking="random", seed=2).commit_step
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert sorted(a[0].tolist()) == list(range(8))


def test_iterative_unmasking_is_coherent_where_one_shot_is_not():
    s1, s2, tilt = [2, 3, 4, 5], [6, 7, 8, 9], [0.06, -0.05, 0.03, -0.02]

    def fn(ids):
        B, T = ids.shape
        probs = torch.full((B, T, V), 1e-4)
        for b in range(B):
            votes = sum((t in s1) - (t in s2) for t in ids[b].tolist())
            for i in range(T):
                p1 = 0.5 + tilt[i] if votes == 0 else (0.95 if votes > 0 else 0.05)
                probs[b, i, s1[i]], probs[b, i, s2[i]] = p1, 1 - p1
        return probs.log()

    empty = torch.empty(1, 0, dtype=torch.long)
    assert diffusion_generate(fn, empty, 4, steps=1, mask_id=MASK).ids.tolist() == [[2, 7, 4, 9]]
    assert diffusion_generate(fn, empty, 4, steps=4, mask_id=MASK).ids.tolist() == [s1]
    for seed in range(4):
        out = diffusion_generate(fn, empty, 4, steps=4, mask_id=MASK, remasking="random", seed=seed).ids.tolist()
        assert out in ([s1], [s2])


def test_banned_ids_and_mask_are_never_generated():
    fn = fixed_logits([1, 1, 0, 0], [0.99] * 4)  # the toy "wants" token 1 and [MASK]
    g = diffusion_generate(fn, torch.empty(1, 0, dtype=torch.long), 4, steps=2, mask_id=MASK, banned_ids=[1])
    assert not ({0, 1} & set(g.ids[0].tolist()))


def test_batch_rows_are_independent():
    fn = fixed_logits([2, 3, 4, 5, 6], [0.5, 0.9, 0.2, 0.8, 0.4])
    prompt = torch.tensor([[7], [8]])
    g = diffusion_generate(fn, prompt, 4, steps=4, mask_id=MASK)
    assert g.ids.tolist() == [[7, 3, 4, 5, 6], [8, 3, 4, 5, 6]]


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_new_tokens=0, steps=1), "max_new_tokens"),
    (dict(max_new_tokens=2, steps=0), "steps"),
    (dict(max_new_tokens=2, steps=1, remasking="greedy"), "remasking"),
    (dict(max_new_tokens=2, steps=1, top_k=0), "top_k"),
])
def test_generate_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        diffusion_generate(fixed_logits([2] * 3, [0.5] * 3), torch.tensor([[5]]), mask_id=MASK, **kwargs)
    with pytest.raises(ValueError, match="prompt"):
        diffusion_generate(fixed_logits([2] * 3, [0.5] * 3), torch.tensor([5]), 2, 1, mask_id=MASK)


# --- fill-mask, pooling, summaries ---------------------------------------------------------------------------------
def test_fill_mask_candidates_known_answer():
    ids = torch.tensor([2, 7, MASK, 8, MASK, 3])
    logits = torch.zeros(6, V)
    logits[2, 5], logits[2, 6], logits[2, 1] = 3.0, 2.0, 9.0  # token 1 is banned below
    logits[4, 9] = 4.0
    found = fill_mask_candidates(logits, ids, MASK, top_k=2, banned_ids=[1, MASK])
    assert [pos for pos, _, _ in found] == [2, 4]
    assert found[0][1].tolist() == [5, 6] and found[1][1][0].item() == 9
    row = logits[2].clone()
    row[[1, MASK]] = float("-inf")
    torch.testing.assert_close(found[0][2], row.softmax(-1)[[5, 6]])
    assert fill_mask_candidates(logits, torch.tensor([2, 7, 8, 3, 4, 5]), MASK) == []
    with pytest.raises(ValueError):
        fill_mask_candidates(logits[:3], ids, MASK)


def test_mean_pool_ignores_padding_and_cls_pool():
    hidden = torch.arange(24, dtype=torch.float).view(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    torch.testing.assert_close(mean_pool(hidden, mask)[0], hidden[0, :2].mean(0))
    torch.testing.assert_close(mean_pool(hidden, mask)[1], hidden[1].mean(0))
    assert torch.equal(cls_pool(hidden, mask), hidden[:, 0])
    torch.testing.assert_close(l2_normalize(torch.tensor([[3.0, 4.0]])), torch.tensor([[0.6, 0.8]]))


def test_split_sentences():
    assert split_sentences("It rains. We stay! Do we? 3 cats sleep.") == ["It rains.", "We stay!", "Do we?",
                                                                          "3 cats sleep."]
    assert split_sentences('He said "Go." Then he left.') == ['He said "Go."', "Then he left."]
    assert split_sentences("version 2.0 is out. Yes\nA new line") == ["version 2.0 is out.", "Yes", "A new line"]
    assert split_sentences("  ") == []
    with pytest.raises(TypeError):
        split_sentences(None)


def test_lexrank_known_graphs():
    star = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    scores = lexrank(star, center=False)
    assert scores.argmax() == 0 and abs(scores.sum().item() - 1) < 1e-5  # the hub is the most central
    symmetric = torch.eye(3) + 0.5
    torch.testing.assert_close(lexrank(symmetric, center=False), torch.full((3,), 1 / 3))
    thresholded = lexrank(star, center=False, threshold=0.5)
    assert thresholded.argmax() == 0
    assert top_sentences(torch.tensor([0.1, 0.5, 0.2, 0.4]), 2) == [1, 3]
    assert top_sentences(torch.tensor([0.1, 0.5]), 5) == [0, 1]


# --- the Model object on the real ci checkpoint -----------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    from dsmini_helpers.runs import get_checkpoint

    return Model.load(get_checkpoint("ci"), device="cpu")


def test_model_describe(model):
    info = model.describe()
    assert info["parameters"] == sum(p.numel() for p in model.net.parameters()) > 0
    assert info["context_length"] == context_length(model.net) and info["device"] == "cpu"


def test_glue_masks_with_the_real_tokenizer(model):
    glued = glue_masks("Paris is the [MASK] of [MASK].", model.tokenizer)
    ids = model.tokenizer.encode(glued, add_special_tokens=False).ids
    assert ids.count(model.mask_id) == 2
    before = ids[ids.index(model.mask_id) - 1]
    assert model.tokenizer.decode([before]).strip() != ""  # no lone-space token before the blank


def test_model_fill_mask(model):
    out = model.fill_mask("Paris is the [MASK] of [MASK].", top_k=4)
    assert len(out["masks"]) == 2 and all(len(c) == 4 for c in out["masks"])
    for cands in out["masks"]:
        probs = [c["probability"] for c in cands]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
        assert not {c["id"] for c in cands} & set(model.special_ids)
    assert "[MASK]" not in out["filled"] and out["filled"].startswith("Paris is the")
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        model.fill_mask("no blank here")
    with pytest.raises(ValueError, match="at most"):
        model.fill_mask("word " * (model.max_len + 10) + "[MASK]")


def test_model_embed(model):
    texts = ["A short text.", "A much longer text about rivers, cities and the history of both, with many words."]
    both = model.embed(texts)
    assert both.shape == (2, model.net.config.d_model) and both.dtype == torch.float32
    torch.testing.assert_close(both.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(model.embed(texts[:1])[0], both[0], atol=1e-4, rtol=1e-4)  # padding changes nothing
    assert not torch.allclose(model.embed(texts, pooling="cls"), both)
    assert model.embed(["word " * 5000]).shape[0] == 1  # truncated to the context, not an error
    with pytest.raises(TypeError):
        model.embed("one string")
    with pytest.raises(ValueError):
        model.embed(texts, pooling="max")


def test_model_generate(model):
    a = model.generate("Deep learning is", max_new_tokens=6, steps=3)
    assert a == model.generate("Deep learning is", max_new_tokens=6, steps=3)  # greedy is deterministic
    assert a["new_tokens"] == 6 and a["steps"] == 3 and a["text"].startswith("Deep learning is")
    s1 = model.generate("Deep learning is", 6, 6, temperature=1.0, top_k=20, seed=3)
    s2 = model.generate("Deep learning is", 6, 6, temperature=1.0, top_k=20, seed=3)
    assert s1 == s2
    assert model.generate("Deep learning is", 6, 6, block_length=2, remasking="random", seed=0)["new_tokens"] == 6
    with pytest.raises(ValueError, match="context"):
        model.generate("word " * model.max_len, max_new_tokens=8)
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        model.generate("a [MASK] here")


def test_model_summarize(model):
    text = ("Rivers carry water to the sea. Many cities grew along rivers. The sea is salty. "
            "Trade on rivers helped cities grow. Bread is made from flour.")
    out = model.summarize(text, num_sentences=2)
    assert len(out["sentences"]) == 2 and out["indices"] == sorted(out["indices"])
    assert out["sentences"] == [split_sentences(text)[i] for i in out["indices"]]
    assert abs(sum(out["scores"]) - 1) < 1e-3
    assert model.summarize(text, num_sentences=10)["indices"] == [0, 1, 2, 3, 4]
    assert model.summarize("One sentence only.", 3)["sentences"] == ["One sentence only."]
    with pytest.raises(ValueError):
        model.summarize("   ", 2)


def test_model_is_safe_under_threads(model):
    texts = [f"Sentence number {i} about topic {i % 3}." for i in range(8)]
    expected = [model.embed([t])[0] for t in texts]
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(3):
                results[i] = model.embed([texts[i]])[0]
                model.fill_mask(f"Sentence [MASK] {i}.")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(8):
        torch.testing.assert_close(results[i], expected[i], atol=1e-5, rtol=1e-5)


# --- commit confidences and the mask-rate comparison -------------------------------------------------------------
def test_commit_conf_is_the_models_probability_at_commit():
    conf = [0.5, 0.9, 0.2, 0.8, 0.4, 0.6]
    fn = fixed_logits([2, 3, 4, 5, 6, 7], conf)
    empty = torch.empty(1, 0, dtype=torch.long)
    low = diffusion_generate(fn, empty, 6, steps=6, mask_id=MASK)
    torch.testing.assert_close(low.commit_conf, torch.tensor([conf]))
    # random remasking ranks slots by a coin, but still records the model's probability of each token
    rnd = diffusion_generate(fn, empty, 6, steps=6, mask_id=MASK, remasking="random", seed=3)
    torch.testing.assert_close(rnd.commit_conf, torch.tensor([conf]))
    # one-shot: every slot committed at step 0, each at its own probability
    one_shot = diffusion_generate(fn, empty, 6, steps=1, mask_id=MASK)
    assert one_shot.commit_step.tolist() == [[0] * 6]
    torch.testing.assert_close(one_shot.commit_conf, torch.tensor([conf]))


class MajorityModel(torch.nn.Module):
    """Predicts, at every position, the most frequent visible ordinary token of its row (token 5 if none is
    visible); returns what chapter 6's model returns with labels: (loss, logits of the labelled positions)."""

    def __init__(self, vocab_size):
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, ids, attention_mask=None, labels=None):
        from types import SimpleNamespace

        B, T = ids.shape
        logits = torch.full((B, T, self.vocab_size), -10.0)
        for b in range(B):
            visible = ids[b][ids[b] > 4]
            guess = int(visible.mode().values) if visible.numel() else 5
            logits[b, :, guess] = 10.0
        sel = labels != -100
        rows = logits[sel]  # (N, V)
        return SimpleNamespace(loss=torch.nn.functional.cross_entropy(rows, labels[sel]), logits=rows)


def test_masked_accuracy_by_rate_known_answers():
    from dsmini_helpers.inference import masked_accuracy_by_rate

    windows = torch.full((8, 20), 7)
    windows[:, 0], windows[:, -1] = 2, 3  # [CLS] 7 7 ... 7 [SEP]: specials are never masked
    rows = masked_accuracy_by_rate(MajorityModel(12), windows, [0.15, 0.5, 1.0], 12, batch_size=3)
    assert [r["rate"] for r in rows] == [0.15, 0.5, 1.0]
    assert rows[0]["accuracy"] == 1.0 and rows[1]["accuracy"] == 1.0  # some 7s visible: the guess is 7
    assert rows[2]["accuracy"] == 0.0 and rows[2]["masked_tokens"] == 8 * 18  # nothing visible: collapse
    counts = [r["masked_tokens"] for r in rows]
    assert counts == sorted(counts) and 0 < counts[0] < counts[1]
    assert all(r["loss"] >= 0 for r in rows)


def test_masked_accuracy_by_rate_same_masks_for_every_call_and_nested():
    from dsmini_helpers.inference import masked_accuracy_by_rate
    from dsmini_helpers.masking import bert_mask

    g = torch.Generator().manual_seed(5)
    windows = torch.randint(5, 30, (6, 32), generator=g)
    a = masked_accuracy_by_rate(MajorityModel(30), windows, [0.3, 0.7], 30)
    b = masked_accuracy_by_rate(MajorityModel(30), windows, [0.3, 0.7], 30, batch_size=2)
    for x, y in zip(a, b):  # batching changes nothing (but float rounding); the masks depend only on the seed
        assert (x["rate"], x["accuracy"], x["masked_tokens"]) == (y["rate"], y["accuracy"], y["masked_tokens"])
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
    lo = bert_mask(windows, 30, 0.3, probs=(1.0, 0.0, 0.0), generator=torch.Generator().manual_seed(0))[1] != -100
    hi = bert_mask(windows, 30, 0.7, probs=(1.0, 0.0, 0.0), generator=torch.Generator().manual_seed(0))[1] != -100
    assert (hi | ~lo).all() and hi.sum() > lo.sum()  # a higher rate hides a superset
    assert a[0]["masked_tokens"] == int(lo.sum())


@pytest.mark.parametrize("kwargs, error", [
    (dict(windows=torch.zeros(4, dtype=torch.long)), TypeError),
    (dict(windows=torch.zeros(2, 4)), TypeError),
    (dict(rates=[]), ValueError),
    (dict(rates=[0.0]), ValueError),
    (dict(rates=[1.5]), ValueError),
    (dict(batch_size=0), ValueError),
])
def test_masked_accuracy_by_rate_rejects_bad_input(kwargs, error):
    from dsmini_helpers.inference import masked_accuracy_by_rate

    args = dict(model=MajorityModel(12), windows=torch.full((2, 8), 7), rates=[0.5], vocab_size=12) | kwargs
    with pytest.raises(error):
        masked_accuracy_by_rate(**args)


def test_masked_accuracy_by_rate_on_the_ci_checkpoints():
    """The real comparison at ci size: both checkpoints, the same masks, accuracies that are probabilities."""
    from dsmini_helpers.batches import fixed_windows, get_token_arrays
    from dsmini_helpers.checkpoint import load_checkpoint
    from dsmini_helpers.inference import masked_accuracy_by_rate
    from dsmini_helpers.runs import get_checkpoint

    tokens = get_token_arrays()
    windows = fixed_windows(tokens["valid"], 8, 32)
    results = []
    for variant in ("default", "mask15"):
        net, tok, _ = load_checkpoint(get_checkpoint("ci", variant=variant))
        results.append(masked_accuracy_by_rate(net, windows, [0.15, 0.9], tok.get_vocab_size()))
    assert [r["masked_tokens"] for r in results[0]] == [r["masked_tokens"] for r in results[1]]
    assert all(0.0 <= r["accuracy"] <= 1.0 for rows in results for r in rows)


# --- the probe set ----------------------------------------------------------------------------------------------
def test_probe_set_is_well_formed():
    from dsmini_helpers.inference import load_probes

    probes = load_probes()
    assert len(probes) >= 30 and len({p["text"] for p in probes}) == len(probes)
    assert {p["kind"] for p in probes} >= {"function word", "agreement", "number", "day or month", "collocation"}


def test_load_probes_rejects_a_probe_without_one_mask(tmp_path):
    from dsmini_helpers.inference import load_probes

    bad = tmp_path / "probes.json"
    bad.write_text('{"probes": [{"kind": "x", "text": "no mask here", "answers": ["a"]}]}')
    with pytest.raises(ValueError, match="exactly one"):
        load_probes(bad)


def test_score_probes_ranks_the_models_own_guess(model):
    from dsmini_helpers.inference import probe_summary, score_probes

    probe = {"kind": "function word", "text": "She put the book [MASK] the table.", "answers": ["on"]}
    [row] = score_probes(model.net, model.tokenizer, [probe])
    assert row["rank"] in (None, 1, 2, 3, 4, 5) and len(row["guesses"]) == len(row["guess_ids"]) == 5
    spaced = [j for j, i in enumerate(row["guess_ids"]) if model.tokenizer.id_to_token(i).startswith("\u0120")]
    assert spaced, row  # some guess is a whole word after a space, e.g. " the"
    j = spaced[0]
    own = {**probe, "answers": [row["guesses"][j]]}  # that guess is declared right
    pieces = {**probe, "answers": ["Wednesdayishly"]}  # several tokens: cannot be scored
    rows = score_probes(model.net, model.tokenizer, [own, pieces])
    assert rows[0]["rank"] == j + 1 and rows[0]["scorable"] and not rows[1]["scorable"]
    summary = probe_summary(rows)
    assert summary["top1"] == (1.0 if j == 0 else 0.0) and summary["top5"] == 1.0 and summary["unscorable"] == 1
    assert summary["by_kind"]["function word"]["probes"] == 1
