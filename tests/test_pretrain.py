"""Chapter 7: masking objectives, the training loop, exact resume, and checkpoints that fail loudly and never pickle."""

import dataclasses
import json
import math
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dsmini_helpers import batches, checkpoint, constants, evaluation, masking, optim, pretrain, profiles, runs
from dsmini_helpers import train as training

V = 1000
SPECIALS = torch.tensor(constants.SPECIAL_IDS)


def sample_batch(n: int, T: int, seed: int = 0) -> torch.Tensor:
    """(n, T) random ids with [CLS] first, [SEP] at a random length, padding after it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(len(constants.SPECIAL_IDS), V, (n, T), generator=g)
    x[:, 0] = constants.CLS_ID
    lengths = torch.randint(T // 2, T + 1, (n,), generator=g)
    x[torch.arange(T) >= lengths[:, None]] = constants.PAD_ID
    x[torch.arange(n), lengths - 1] = constants.SEP_ID
    return x


@pytest.fixture(scope="module")
def big():
    return sample_batch(4000, 128)  # 512k positions, about 380k maskable


def _fractions(x, inputs, labels):
    chosen = labels != constants.IGNORE_INDEX
    n = chosen.sum().item()
    return (n / masking.maskable_positions(x).sum().item(),
            ((inputs == constants.MASK_ID) & chosen).sum().item() / n,
            ((inputs != x) & (inputs != constants.MASK_ID) & chosen).sum().item() / n,
            ((inputs == x) & chosen).sum().item() / n)


@pytest.mark.parametrize("rate", [0.15, 0.3])
def test_bert_mask_statistics(big, rate):
    inputs, labels = masking.bert_mask(big, V, rate, generator=torch.Generator().manual_seed(1))
    got_rate, mask, rand, keep = _fractions(big, inputs, labels)
    assert abs(got_rate - rate) < 0.01
    assert abs(mask - 0.8) < 0.01 and abs(rand - 0.1) < 0.01 and abs(keep - 0.1) < 0.01
    chosen = labels != constants.IGNORE_INDEX
    assert not torch.isin(big[chosen], SPECIALS).any(), "a special or padding token was chosen"
    replaced = chosen & (inputs != big) & (inputs != constants.MASK_ID)
    assert replaced.any() and not torch.isin(inputs[replaced], SPECIALS).any(), "a random replacement is special"
    assert torch.equal(labels[chosen], big[chosen]) and (labels[~chosen] == constants.IGNORE_INDEX).all()
    assert torch.equal(inputs[~chosen], big[~chosen])  # unchosen positions are untouched


def test_masking_is_dynamic_and_reproducible(big):
    a = masking.bert_mask(big[:8], V, generator=torch.Generator().manual_seed(0))[1]
    b = masking.bert_mask(big[:8], V, generator=torch.Generator().manual_seed(0))[1]
    g = torch.Generator().manual_seed(0)
    c, d = masking.bert_mask(big[:8], V, generator=g)[1], masking.bert_mask(big[:8], V, generator=g)[1]
    assert torch.equal(a, b) and not torch.equal(c, d)


def test_span_lengths_follow_the_distribution():
    pmf = masking.span_length_pmf(0.2, 10)
    assert pmf.shape == (10,) and abs(pmf.sum().item() - 1) < 1e-12
    assert abs((pmf * torch.arange(1, 11)).sum().item() - 3.797) < 1e-3  # SpanBERT's mean span length, 3.8
    assert pmf[0].item() == pytest.approx(0.2 / (1 - 0.8**10))
    drawn = masking.sample_span_lengths(200_000, generator=torch.Generator().manual_seed(0))
    assert drawn.min() >= 1 and drawn.max() <= 10
    freq = torch.bincount(drawn, minlength=11)[1:].double() / len(drawn)
    assert (freq - pmf).abs().max() < 0.01


def test_span_select_rate_contiguity_and_specials(big):
    x = big[:2000]
    sel = masking.span_select(x, 0.15, generator=torch.Generator().manual_seed(0))
    ok = masking.maskable_positions(x)
    assert abs(sel.sum().item() / ok.sum().item() - 0.15) < 0.01
    assert not (sel & ~ok).any()
    runs = masking.run_lengths(sel)
    assert runs.max() <= 10 and runs.min() >= 1
    bert_runs = masking.run_lengths(masking.bert_select(x, 0.15, generator=torch.Generator().manual_seed(0)))
    assert runs.double().mean() > 2.5 > 1.5 > bert_runs.double().mean()
    inputs, labels = masking.span_mask(x, V, 0.15, generator=torch.Generator().manual_seed(0))
    _, mask, rand, keep = _fractions(x, inputs, labels)
    assert abs(mask - 0.8) < 0.01 and abs(rand - 0.1) < 0.01 and abs(keep - 0.1) < 0.01


def test_run_lengths_known_answer():
    sel = torch.tensor([[1, 1, 0, 1, 0, 0, 1, 1, 1]], dtype=torch.bool)
    assert masking.run_lengths(sel).tolist() == [2, 1, 3]


def test_variable_rate_mask(big):
    inputs, labels = masking.variable_rate_mask(big, V, 0.15, 1.0, generator=torch.Generator().manual_seed(0))
    chosen = labels != constants.IGNORE_INDEX
    per_seq = chosen.sum(1) / masking.maskable_positions(big).sum(1)
    assert abs(per_seq.mean().item() - 0.575) < 0.01
    assert per_seq.max() > 0.95 and per_seq.min() < 0.2
    assert (inputs[chosen] == constants.MASK_ID).all() and not torch.isin(big[chosen], SPECIALS).any()


def test_bad_input_gets_clear_errors():
    x = sample_batch(2, 16)
    with pytest.raises(TypeError, match="integer tensor"):
        masking.bert_mask(x.float(), V)
    with pytest.raises(TypeError, match=r"\(B, T\)"):
        masking.bert_mask(x[0], V)
    with pytest.raises(ValueError, match="rate"):
        masking.bert_mask(x, V, rate=1.5)
    with pytest.raises(ValueError, match="probs"):
        masking.bert_mask(x, V, probs=(0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="objective"):
        masking.mask_batch(x, V, "gpt")
    with pytest.raises(ValueError, match="min_rate"):
        masking.variable_rate_mask(x, V, 0.9, 0.5)
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        training.TrainConfig.from_dict({"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="objective"):
        training.TrainConfig.for_profile("ci", objective="clm")


def test_lr_schedule():
    kw = dict(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert optim.lr_at(0, **kw) == pytest.approx(0.1) and optim.lr_at(9, **kw) == pytest.approx(1.0)
    assert optim.lr_at(60, **kw) == pytest.approx(0.55)
    assert optim.lr_at(110, **kw) == pytest.approx(0.1) and optim.lr_at(500, **kw) == pytest.approx(0.1)
    lrs = [optim.lr_at(s, **kw) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_param_groups_no_decay_on_norms_biases_embeddings():
    emb = nn.Embedding(10, 4)
    lin = nn.Linear(4, 4)
    norm = nn.LayerNorm(4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight  # tied
    model = nn.ModuleDict(dict(emb=emb, lin=lin, norm=norm, head=head))
    decay, keep = optim.param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(lin.weight)}
    assert {id(p) for p in keep["params"]} == {id(emb.weight), id(lin.bias), id(norm.weight), id(norm.bias)}


def test_optimizer_state_round_trip_without_pickle():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = torch.optim.AdamW(optim.param_groups(model, 0.01), lr=1e-2)
    for _ in range(3):
        model(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
    tensors, meta = checkpoint.optimizer_to_tensors(opt)
    meta = json.loads(json.dumps(meta))  # must survive JSON
    opt2 = torch.optim.AdamW(optim.param_groups(model, 0.01), lr=1e-2)
    checkpoint.optimizer_from_tensors(opt2, tensors, meta)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i in a["state"]:
        for k in a["state"][i]:
            torch.testing.assert_close(a["state"][i][k], b["state"][i][k], rtol=0, atol=0)


def test_pick_precision():
    assert optim.pick_precision(torch.device("cpu")) == torch.float32
    assert optim.pick_precision(torch.device("cpu"), "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        optim.pick_precision(torch.device("cpu"), "fp8")


# ---- the loop and checkpoints (need chapters 1, 2, 5, 6) ----------------------------------------------------------

def tiny(**kw) -> "training.TrainConfig":
    base = dict(max_steps=6, batch_size=4, seq_len=32, eval_every=3, eval_batches=1, warmup_steps=2,
                variable_mix=0.25, precision="fp32")
    return training.TrainConfig.for_profile("ci", **{**base, **kw})


@pytest.fixture(scope="module")
def data():
    from dsmini_helpers.tokenizer import get_tokenizer

    tok = get_tokenizer()
    return tok, batches.get_token_arrays(tok)


def run(cfg, out, data, **kw):
    tok, arrays = data
    return training.train(cfg, out, tokenizer=tok, token_arrays=arrays, device="cpu", progress=False, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("run")
    return run(tiny(max_steps=30, eval_every=30, lr=3e-3), out, data)


def test_short_run_lowers_the_loss(trained, data):
    losses = [r["loss"] for r in trained.records("train") if r["objective"] == "bert"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3
    tok, arrays = data
    cfg = tiny()
    valid = batches.make_valid_set(arrays["valid"], tok.get_vocab_size(), n_batches=1, batch_size=cfg.batch_size,
                             seq_len=cfg.seq_len, rate=cfg.mask_rate)
    at_init = evaluation.evaluate(training.build_model(cfg), valid)
    final = trained.records("eval")[-1]
    assert final["valid_loss"] < at_init["valid_loss"]
    assert math.isclose(final["valid_perplexity"], math.exp(final["valid_loss"]), rel_tol=1e-9)
    lines = (trained.checkpoint.parent / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(trained.history) and json.loads(lines[-1])["kind"] == "eval"


def test_resume_equals_uninterrupted(tmp_path, data):
    cfg = tiny(save_every=3)
    whole = run(cfg, tmp_path / "whole", data)
    resumed = run(cfg, tmp_path / "resumed", data, resume_from=tmp_path / "whole" / "step-0000003")
    a = [r["loss"] for r in whole.records("train")]
    b = [r["loss"] for r in resumed.records("train")]
    assert len(a) == len(b) == 6
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-6
    assert [r["objective"] for r in whole.records("train")] == [r["objective"] for r in resumed.records("train")]
    wa = checkpoint.load_checkpoint(whole.checkpoint)[0].state_dict()
    wb = checkpoint.load_checkpoint(resumed.checkpoint)[0].state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)


def test_load_checkpoint_round_trip(trained):
    model, tok, state = checkpoint.load_checkpoint(trained.checkpoint)
    assert state["step"] == 30 and state["train_config"]["max_steps"] == 30
    assert not model.training
    for k, v in trained.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)
    assert tok.get_vocab_size() == model.config.vocab_size


@pytest.mark.parametrize("damage, message", [
    ("truncate", "truncated"), ("flip", "modified"), ("manifest", "no manifest.json"),
    ("config", "modified"), ("missing", "missing"), ("garbage-manifest", "not valid JSON"),
])
def test_damaged_checkpoint_fails_clearly(trained, tmp_path, damage, message):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(trained.checkpoint, bad)
    w = bad / "model.safetensors"
    if damage == "truncate":
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    elif damage == "flip":
        raw = bytearray(w.read_bytes())
        raw[len(raw) // 2] ^= 0x40
        w.write_bytes(bytes(raw))
    elif damage == "manifest":
        (bad / "manifest.json").unlink()
    elif damage == "config":
        cfg = bad / "config.json"
        cfg.write_text(cfg.read_text().replace("1", "2", 1))
    elif damage == "missing":
        (bad / "tokenizer.json").unlink()
    else:
        (bad / "manifest.json").write_text("{not json")
    with pytest.raises(checkpoint.CheckpointError, match=message):
        checkpoint.load_checkpoint(bad)
    with pytest.raises(checkpoint.CheckpointError):
        training.train(tiny(max_steps=40), tmp_path / "r", resume_from=bad, progress=False, device="cpu")


def test_no_checkpoint_folder():
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint folder"):
        checkpoint.load_checkpoint("/nonexistent/step-0000001")


def test_loading_never_unpickles(trained, tmp_path, monkeypatch, data):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained.checkpoint, ckpt)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    for name in ("optimizer.pt", "pytorch_model.bin", "training_args.bin"):
        (ckpt / name).write_bytes(pickle.dumps(Evil()))  # a checkpoint someone "helpfully" extended

    def forbidden(*a, **k):
        raise AssertionError("loading a checkpoint must never unpickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    checkpoint.load_checkpoint(ckpt)
    run(tiny(max_steps=32, eval_every=32), tmp_path / "resume", data, resume_from=ckpt)
    assert not marker.exists()


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import safetensors.torch
    from dsmini_helpers import checkpoint

    src, dst, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    model, tok, state = checkpoint.load_checkpoint(src)
    real = safetensors.torch.save_model

    def dying_save(m, filename, *a, **k):
        real(m, filename, *a, **k)
        with open(filename, "r+b") as f:  # leave a half-written file behind, then die without cleanup
            f.truncate(os.path.getsize(filename) // 2)
        os._exit(9)

    checkpoint.save_model = dying_save  # the name checkpoint.py calls
    checkpoint.save_checkpoint(dst, model, tok, state={"step": 999})
""")


@pytest.mark.parametrize("mode", ["new-step", "overwrite"])
def test_killed_mid_write_leaves_previous_loadable(trained, tmp_path, mode):
    import shutil

    root = tmp_path / "ckpts"
    prev = root / "step-0000030"
    shutil.copytree(trained.checkpoint, prev)
    dst = root / "step-0000031" if mode == "new-step" else prev
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(prev), str(dst), mode],
                          capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert checkpoint.latest_checkpoint(root) == prev
    model, _, state = checkpoint.load_checkpoint(prev)
    assert state["step"] == 30
    assert not (root / "step-0000031").exists()  # only a hidden temporary folder may be left


def test_nan_guard_stops_with_a_clear_message(tmp_path, monkeypatch, data):
    # the step takes its auxiliary loss through the one-process hook, OneProcess.aux_loss
    monkeypatch.setattr(training, "moe_aux_loss", lambda model: torch.tensor(float("nan")))
    with pytest.raises(FloatingPointError, match="diverged"):
        run(tiny(), tmp_path / "nan", data)


def test_get_checkpoint_trains_once_then_reuses(private_store, monkeypatch):
    calls = []
    real_train = training.train

    def counting_train(*a, **k):
        calls.append(1)
        return real_train(*a, **k)

    monkeypatch.setenv("DSMINI_PROFILE", "ci")
    monkeypatch.setattr(runs, "train", counting_train)
    first = runs.get_checkpoint()
    second = runs.get_checkpoint("ci")
    assert first == second and first.parent.parent == private_store / "checkpoints" and len(calls) == 1
    assert first.parent.name.startswith("ci-default-") and runs.find_checkpoint("ci") == first
    model, tok, state = checkpoint.load_checkpoint(first)
    assert state["step"] == training.TrainConfig.for_profile("ci").max_steps


def test_get_checkpoint_variant_trains_bert_only_masking_out_of_the_servers_way(private_store):
    path = runs.get_checkpoint("ci", "mask15")
    assert path.parent.parent == private_store / "runs" and path.parent.name.startswith("ci-mask15-")
    checkpoints = private_store / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.rglob("model.safetensors"))
    cfg = checkpoint.load_checkpoint(path)[2]["train_config"]
    assert cfg["mask_rate"] == 0.15 and cfg["variable_mix"] == 0.0
    with pytest.raises(ValueError, match="variant must be one of"):
        runs.get_checkpoint("ci", "mask50")


ROOT = Path(__file__).resolve().parents[1]
CLI_ARGS = [["--profile", "ci"]] + [["--config", str(p)] for p in sorted((ROOT / "experiments").glob("*ci*.yaml"))]


@pytest.mark.parametrize("args", CLI_ARGS, ids=[a[-1].rsplit("/", 1)[-1] for a in CLI_ARGS])
def test_cli_prints_where_the_checkpoint_went(tmp_path, args):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "dsmini_helpers.pretrain", *args, "--max-steps", "3",
                           "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stdout.splitlines() if x.startswith("checkpoint: ")][-1]
    path = Path(line.split(": ", 1)[1])
    assert path == out / "step-0000003" and checkpoint.verify_checkpoint(path)


def test_yaml_config(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("name: exp\nprofile: ci\ntrain:\n  max_steps: 7\n  lr: 0.001\n")
    cfg, name = pretrain.config_from_yaml(f)
    assert (cfg.max_steps, cfg.lr, cfg.model, name) == (7, 0.001, "ci", "exp")
    f.write_text("train:\n  max_step: 7\n")
    with pytest.raises(ValueError, match="max_step"):
        pretrain.config_from_yaml(f)
    f.write_text("profile: ci\ntrian:\n  max_steps: 7\n")
    with pytest.raises(ValueError, match="trian"):
        pretrain.config_from_yaml(f)
    f.write_text("profile: ci\nmodel:\n  d_modl: 64\n")
    with pytest.raises(ValueError, match="d_modl"):
        pretrain.config_from_yaml(f)


def test_profiles_read_their_run_from_the_experiment_files_and_reject_unknown_keys():
    for name in ("ci", "cpu", "gpu"):
        cfg = training.TrainConfig.for_profile(name)
        from_file, _ = pretrain.config_from_yaml(profiles.get_profile(name).experiment_path())
        assert cfg.model == name and training.build_model(from_file).config == training.build_model(cfg).config
        assert dataclasses.replace(from_file, model=name) == cfg
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        training.TrainConfig.for_profile("ci", ablation_steps=3)  # not silently dropped


def test_gradient_accumulation_equals_one_big_batch(tmp_path, data):
    """4 windows x 2 micro-batches must train exactly like 8 windows at once (the micro-batches hold different
    numbers of masked tokens, so a plain loss / grad_accum would not). balance="none": the MoE auxiliary loss is a
    per-micro-batch statistic, the one part that is not additive."""
    same = dict(max_steps=5, eval_every=5, variable_mix=0.5, model_overrides={"balance": "none"})
    big = run(tiny(batch_size=8, grad_accum=1, **same), tmp_path / "big", data)
    acc = run(tiny(batch_size=4, grad_accum=2, **same), tmp_path / "acc", data)
    for a, b in zip(big.records("train"), acc.records("train"), strict=True):
        assert a["objective"] == b["objective"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-6)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
    for (name, p), q in zip(big.model.state_dict().items(), acc.model.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5, msg=name)  # Adam amplifies float noise in tiny grads


def test_torch_compile_option_trains_like_eager(tmp_path, data):
    """compile=True runs the same loop through torch.compile (dense model: the MoE dispatch splits the graph).

    AOTAutograd's on-disk cache is off here: saving an entry once crashed the interpreter (a segfault while
    pickling it, torch 2.13, in the full suite only); what is tested is the training loop, not that cache.
    """
    same = dict(max_steps=3, eval_every=3, model_overrides={"moe_layers": ()})
    eager = run(tiny(**same), tmp_path / "eager", data)
    with torch._functorch.config.patch(enable_autograd_cache=False):
        compiled = run(tiny(compile=True, **same), tmp_path / "compiled", data)
    for a, b in zip(eager.records("train"), compiled.records("train"), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    assert checkpoint.verify_checkpoint(compiled.checkpoint)
    assert not any(k.startswith("_orig_mod") for k in checkpoint.load_checkpoint(compiled.checkpoint)[0].state_dict())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_paths_run(tmp_path, data, precision):
    """The autocast (and, for fp16, GradScaler) code paths, exercised on the CPU."""
    res = run(tiny(max_steps=3, eval_every=3, precision=precision, grad_accum=2), tmp_path / precision, data)
    losses = [r["loss"] for r in res.records("train")]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    state = checkpoint.load_checkpoint(res.checkpoint)[2]
    assert state["precision"] == str(optim.pick_precision(torch.device("cpu"), precision))
    assert ("scale" in state["scaler"]) == (precision == "fp16")


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_every_experiment_file_parses(path):
    from dsmini_helpers.model import DSMiniConfig

    cfg, name = pretrain.config_from_yaml(path)
    assert name == path.stem
    model = DSMiniConfig.from_dict(dict(cfg.model)) if isinstance(cfg.model, dict) else None
    assert model is None or model.vocab_size == 20_000


def test_group_accuracies_add_up_to_the_overall_accuracy(trained, data):
    tok, arrays = data
    V = tok.get_vocab_size()
    valid = batches.make_valid_set(arrays["valid"], V, n_batches=2, batch_size=8, seq_len=32, rate=0.3)
    groups = {"band": evaluation.frequency_bands(arrays["train"], V), "word_class": evaluation.word_classes(tok)}
    plain = evaluation.evaluate(trained.model, valid)
    split = evaluation.evaluate(trained.model, valid, groups=groups)
    assert split["valid_loss"] == plain["valid_loss"] and split["valid_accuracy"] == plain["valid_accuracy"]
    for name, g in groups.items():
        target = torch.cat([lab[lab != constants.IGNORE_INDEX] for _, lab in valid])
        sizes = torch.bincount(g[target], minlength=int(g.max()) + 1)
        right = sum(a * int(n) for a, n in zip(split[f"{name}_accuracy"], sizes) if a is not None)
        assert math.isclose(right / len(target), plain["valid_accuracy"], rel_tol=1e-9)
    assert all(r.get("band_accuracy") for r in trained.records("eval"))  # the loop records them


def test_frequency_bands_and_word_classes_known_answers(data):
    tokens = np.array([5] * 30 + [6] * 20 + [7] * 10 + list(range(8, 40)))
    bands = evaluation.frequency_bands(tokens, 50, edges=(1, 3))
    assert bands[5] == 0 and bands[6] == bands[7] == 1 and bands[8] == bands[49] == 2
    tok, _ = data
    classes = evaluation.word_classes(tok)
    assert classes[tok.token_to_id("Ġthe")] == 1 and classes[tok.token_to_id(",")] == 0
    assert classes[tok.token_to_id("Ġcity")] == 2


# --- early stopping --------------------------------------------------------------------------------------------
def evals_log(losses: list[float]) -> "training.MetricsLog":
    history = [{"kind": "eval", "step": 10 * (i + 1), "heldout_loss": x} for i, x in enumerate(losses)]
    return training.MetricsLog(None, history)


@pytest.mark.parametrize("losses, patience, expected", [
    ([3.0], 2, (True, False)),  # the first evaluation is the best so far
    ([3.0, 2.0], 2, (True, False)),
    ([3.0, 2.0, 2.5], 2, (False, False)),  # one evaluation without a gain: wait
    ([3.0, 2.0, 2.5, 2.1], 2, (False, True)),  # two: stop
    ([3.0, 2.0, 2.5, 2.1], 3, (False, False)),
    ([3.0, 2.0, 2.5, 2.0], 1, (False, True)),  # equal is not better
])
def test_early_stopping_known_answers(losses, patience, expected):
    log = evals_log(losses)
    assert training.early_stopping(tiny(patience=patience), log, step=10 * len(losses)) == expected
    stops = [r for r in log.history if r["kind"] == "stop"]
    assert len(stops) == expected[1] and all(r["best_step"] == 20 for r in stops)


def test_early_stopping_is_off_without_patience_and_between_evaluations():
    assert training.early_stopping(tiny(), evals_log([3.0, 4.0, 5.0]), step=30) == (False, False)
    assert training.early_stopping(tiny(patience=1), evals_log([3.0, 4.0]), step=25) == (False, False)
    assert training.is_save_point(tiny(patience=2), 6, improved=False) is False  # not even the last step
    assert training.is_save_point(tiny(patience=2), 3, improved=True) is True
    with pytest.raises(ValueError, match="patience"):
        tiny(patience=-1)


def test_a_run_that_memorises_stops_and_keeps_its_best_checkpoint(tmp_path, data):
    tok, arrays = data
    small = {**arrays, "train": arrays["train"][:4000]}  # a slice it can learn by heart
    cfg = tiny(max_steps=400, batch_size=8, seq_len=64, eval_every=20, eval_batches=4, variable_mix=0.0, patience=3)
    res = training.train(cfg, tmp_path, tokenizer=tok, token_arrays=small, device="cpu", progress=False)
    ev, (stop,) = res.records("eval"), res.records("stop")
    assert stop["step"] < 400 and stop["step"] - stop["best_step"] == 3 * 20
    assert res.checkpoint == tmp_path / f"step-{stop['best_step']:07d}" == checkpoint.latest_checkpoint(tmp_path)
    best = next(r for r in ev if r["step"] == stop["best_step"])
    assert ev[-1]["train_sample_loss"] < best["train_sample_loss"] and ev[-1]["heldout_loss"] > best["heldout_loss"]
    assert {"valid_loss", "heldout_accuracy", "train_sample_masked_tokens"} <= set(ev[0])
