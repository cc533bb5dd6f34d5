"""Checkpoints the ecosystem loads: hub mixin round trip, transformers' Auto classes and fill-mask pipeline,
remote code in a fresh interpreter, the model card. Offline, on a local folder (HF_HUB_OFFLINE=1)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from dsmini_helpers.checkpoint import load_checkpoint
from dsmini_helpers.hf import DSMiniHub, export_pretrained
from dsmini_helpers.train import TrainConfig, train

SENTENCES = ["The capital of France is [MASK].", "A cat sat on the [MASK] all day long."]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    cfg = TrainConfig.for_profile("ci", max_steps=2, eval_every=2, save_every=0, precision="fp32")
    result = train(cfg, root / "run", device="cpu", progress=False)
    return result.checkpoint, export_pretrained(result.checkpoint, root / "hf")


def _ours(checkpoint, batch):
    model, _, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        return model(batch["input_ids"], batch["attention_mask"].bool()).logits  # (B, T, V)


def test_folder_has_weights_config_tokenizer_code_and_card(exported):
    checkpoint, folder = exported
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "modeling_dsmini.py", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "README.md"} <= names
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "dsmini" and config["auto_map"]["AutoModelForMaskedLM"]
    card = (folder / "README.md").read_text()
    flat = " ".join(card.split())
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert "pipeline_tag: fill-mask" in card and "Trained for 2 steps on 1 process(es)" in flat
    assert f"| `lr` | `{state['train_config']['lr']}` |" in card
    assert "| valid_loss |" in card and "CC BY-SA" in card


def test_hub_mixin_round_trip(exported):
    checkpoint, folder = exported
    model, _, _ = load_checkpoint(checkpoint)
    again = DSMiniHub.from_pretrained(folder).eval()
    for (name, p), q in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(p, q), name
    assert again.head.weight is again.embed.weight  # still tied


def test_transformers_auto_classes_and_pipeline_match_ours(exported):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    checkpoint, folder = exported
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.mask_token == "[MASK]" and tok.mask_token_id == 4
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    model = AutoModelForMaskedLM.from_pretrained(folder).eval()
    with torch.no_grad():
        theirs = model(**batch).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(theirs[real], _ours(checkpoint, batch)[real], rtol=0, atol=1e-5)
    guesses = pipeline("fill-mask", model=str(folder))(SENTENCES[0], top_k=3)
    assert len(guesses) == 3 and all(g["sequence"].startswith("The capital of France is") for g in guesses)
    ids = tok(SENTENCES[0], return_tensors="pt")
    with torch.no_grad():
        row = model(**ids).logits[0, ids["input_ids"][0].tolist().index(4)].softmax(-1)
    torch.testing.assert_close(torch.tensor(guesses[0]["score"]), row.max(), rtol=1e-5, atol=1e-6)


def test_remote_code_in_a_fresh_interpreter(exported, tmp_path):
    checkpoint, folder = exported
    code = f"""
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline
path = {str(folder)!r}
model = AutoModelForMaskedLM.from_pretrained(path, trust_remote_code=True).eval()
tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
batch = tok({SENTENCES!r}, padding=True, return_tensors="pt")
with torch.no_grad():
    torch.save(model(**batch).logits, {str(tmp_path / "logits.pt")!r})
pipeline("fill-mask", model=path, trust_remote_code=True)({SENTENCES[0]!r})
print(type(model).__name__)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("DSMiniForMaskedLM")
    from transformers import AutoTokenizer

    batch = AutoTokenizer.from_pretrained(folder)(SENTENCES, padding=True, return_tensors="pt")
    real = batch["attention_mask"].bool()
    theirs = torch.load(tmp_path / "logits.pt")
    torch.testing.assert_close(theirs[real], _ours(checkpoint, batch)[real], rtol=0, atol=1e-5)


def test_export_refuses_a_damaged_checkpoint(exported, tmp_path):
    import shutil

    from dsmini_helpers.checkpoint import CheckpointError

    checkpoint, _ = exported
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError):
        export_pretrained(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
