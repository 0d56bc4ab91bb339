"""Checkpoint folders: exact round trips, and a clear refusal for anything missing, broken or unsafe."""

import json
import os
import pickle
import shutil
import struct
import tracemalloc
from dataclasses import replace

import pytest
import torch

from bench.measure import run_measured
from chatbot.chat.sampling import SamplingConfig
from chatbot.chat.session import ChatSession
from chatbot.errors import ChatbotError
from chatbot.lm.checkpoint import load_checkpoint, load_tensors, save_checkpoint, tensor_bytes
from chatbot.lm.model import LanguageModel, ModelConfig

REQUIRED_METRICS = {"val_nats_per_char", "val_bits_per_char", "steps", "tokens_seen", "train_seconds"}


@pytest.fixture
def folder(tiny_checkpoint, tmp_path):
    """A private copy of the trained checkpoint that a test may damage."""
    return shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")


def reply(ckpt, seed=3):
    s = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(temperature=2.0, seed=seed, max_new_tokens=60))
    return "".join(s.send("what is an lstm?"))


def test_config_records_model_tokenizer_training_corpus_and_metrics(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["format"] == "lstm-chat/1"
    assert config["model"]["cell"] == "lstm" and config["model"]["hidden_size"] == 96
    assert config["tokenizer"]["kind"] == "char"
    assert config["training"]["max_steps"] == 600
    assert len(config["corpus"]["sha256"]) == 64
    assert REQUIRED_METRICS <= set(config["metrics"])
    assert sorted(p.name for p in tiny_checkpoint.iterdir() if p.is_file()) == [
        "config.json", "model.safetensors", "tokenizer.json", "train_log.jsonl"]


def test_round_trip_gives_identical_logits_and_generation(tiny_checkpoint, tmp_path):
    first = load_checkpoint(tiny_checkpoint)
    save_checkpoint(tmp_path / "copy", first.model, first.tokenizer, first.spec)
    second = load_checkpoint(tmp_path / "copy")
    ids = torch.tensor([first.tokenizer.encode("hello, what does the forget gate do?")])
    with torch.inference_mode():
        assert torch.equal(first.model(ids)[0], second.model(ids)[0])
    assert reply(first) == reply(second)
    assert reply(first, seed=3) != reply(first, seed=4)  # the seed really drives sampling
    assert not list((tmp_path / "copy").glob("*.tmp"))  # atomic writes leave no temp files


def test_an_fp16_copy_is_half_the_size_and_answers_alike(folder, tmp_path):
    """`python -m chatbot fp16`: the weights stored as fp16 load back as fp32 and give nearly
    the same log-probabilities; an --out that holds anything is refused, not overwritten."""
    from conftest import run_cli

    result = run_cli("-m", "chatbot", "fp16", "--model", str(folder), "--out", str(tmp_path / "half"))
    assert result.returncode == 0, result.stderr
    full, half = load_checkpoint(folder), load_checkpoint(tmp_path / "half")
    size = lambda f: (f / "model.safetensors").stat().st_size  # noqa: E731
    assert size(tmp_path / "half") < 0.55 * size(folder)
    assert all(t.dtype == torch.float16 for t in load_tensors(tmp_path / "half" / "model.safetensors")[0].values())
    assert all(p.dtype == torch.float32 for p in half.model.parameters())
    ids = torch.tensor([full.tokenizer.encode("hello, what does the forget gate do?")])
    with torch.inference_mode():
        a, b = full.model.eval()(ids)[0].log_softmax(-1), half.model.eval()(ids)[0].log_softmax(-1)
    assert not torch.equal(a, b) and torch.allclose(a, b, atol=0.05)
    assert (tmp_path / "half" / "train_log.jsonl").read_bytes() == (folder / "train_log.jsonl").read_bytes()
    again = run_cli("-m", "chatbot", "fp16", "--model", str(folder), "--out", str(tmp_path / "half"))
    assert again.returncode == 2 and "is not empty" in again.stderr
    assert load_checkpoint(tmp_path / "half").fingerprint == half.fingerprint  # left as it was


def test_weights_beyond_fp16s_range_are_not_halved(folder, tmp_path):
    from chatbot.lm.checkpoint import save_fp16_copy

    ckpt = load_checkpoint(folder)
    with torch.no_grad():
        ckpt.model.head.bias[0] = 1e6
    save_checkpoint(folder, ckpt.model, ckpt.tokenizer, ckpt.spec)
    with pytest.raises(ChatbotError, match="beyond fp16's range"):
        save_fp16_copy(folder, tmp_path / "half")


def test_tied_head_is_stored_once(tiny_checkpoint):
    from safetensors import safe_open
    with safe_open(str(tiny_checkpoint / "model.safetensors"), "pt") as f:
        assert "head.weight" not in f.keys() and "embed.weight" in f.keys()


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_a_missing_file_is_named(folder, name):
    (folder / name).unlink()
    with pytest.raises(ChatbotError, match=f"{name} is missing"):
        load_checkpoint(folder)


def test_truncated_weights_are_named(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ChatbotError, match=r"model\.safetensors: .*(truncated|corrupt)"):
        load_checkpoint(folder)


@pytest.mark.parametrize("name, content, message", [
    ("config.json", b"{ not json", "config.json: not valid JSON"),
    ("config.json", b'{"format": "other"}', "not an lstm-chat checkpoint config"),
    ("tokenizer.json", b"[1, 2]", "tokenizer.json: not a"),
    ("model.safetensors", b"", "model.safetensors: too short"),
])
def test_corrupt_files_are_named(folder, name, content, message):
    (folder / name).write_bytes(content)
    with pytest.raises(ChatbotError, match=message):
        load_checkpoint(folder)


def test_files_from_different_runs_are_refused(folder, tmp_path):
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["chars"] = tokenizer["chars"][:-3]
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ChatbotError, match="different runs"):
        load_checkpoint(folder)


@pytest.mark.parametrize("setting, value", [("hidden_size", 64), ("num_layers", 3), ("cell", "gru"),
                                            ("cell", "rnn")])
def test_weights_that_do_not_fit_the_config_are_refused(folder, setting, value):
    """A config.json from another run (other size, depth or cell type) next to these weights."""
    config = json.loads((folder / "config.json").read_text())
    config["model"][setting] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ChatbotError, match=r"model\.safetensors: (tensor .* has shape|the weights do not fit config\.json)"):
        load_checkpoint(folder)


def test_missing_folder_says_how_to_train_one(tmp_path):
    with pytest.raises(ChatbotError, match="no checkpoint at .*Train one with: python train_lm.py"):
        load_checkpoint(tmp_path / "nothing")


class Payload:
    """Unpickling this creates a file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_pickle_is_refused_without_running_it(folder, tmp_path, writer):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    if writer == "pickle":
        evil.write_bytes(pickle.dumps(Payload(marker)))
    else:
        torch.save({"weights": Payload(marker)}, evil)
    pickle.loads(evil.read_bytes()) if writer == "pickle" else None  # the payload is real...
    assert marker.exists() if writer == "pickle" else True
    marker.unlink(missing_ok=True)

    with pytest.raises(ChatbotError, match="pickle"):
        load_checkpoint(evil)  # passed as the checkpoint itself
    shutil.copy(evil, folder / "model.safetensors")
    with pytest.raises(ChatbotError, match="never unpickles"):
        load_checkpoint(folder)  # hidden inside a checkpoint folder
    assert not marker.exists()


def _weights_with_header_length(weights: dict, target: int) -> bytes:
    """The same tensors as safetensors bytes whose JSON header is exactly `target` bytes."""
    for pad in range(0, 2000):
        raw = tensor_bytes(weights, {"format": "lstm-chat/1", "pad": "x" * pad})
        if struct.unpack("<Q", raw[:8])[0] == target:
            return raw
    raise AssertionError(f"no padding gives a {target}-byte header")


HEADER_LENGTHS = [640, 648, 888, 896, 904, 1144, 1152, 1160, 1400, 1408, 1416]


@pytest.mark.parametrize("header_len", HEADER_LENGTHS)
def test_valid_tensors_load_whatever_their_header_length(tmp_path, header_len):
    # 0x80 0x02..0x05 as the first two bytes (header lengths 640, 896, 1152, 1408) are also
    # a pickle's opening bytes: the file must be recognised by its structure, not by them.
    path = tmp_path / "w.safetensors"
    path.write_bytes(_weights_with_header_length({"w": torch.arange(6.0).reshape(2, 3)}, header_len))
    tensors, metadata = load_tensors(path)
    assert torch.equal(tensors["w"], torch.arange(6.0).reshape(2, 3)) and metadata["format"]


@pytest.mark.parametrize("header_len", [896, 1152, 1408])
def test_a_checkpoint_loads_whatever_its_header_length(folder, header_len):
    weights, _ = load_tensors(folder / "model.safetensors")
    (folder / "model.safetensors").write_bytes(_weights_with_header_length(weights, header_len))
    assert load_checkpoint(folder).model is not None


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_on_load(folder, value):
    """NaN or infinite weights would load and then crash sampling (torch.multinomial)."""
    from safetensors.torch import save_file
    from chatbot.lm.checkpoint import weights_digest
    weights, metadata = load_tensors(folder / "model.safetensors")
    weights["rnn.weight_hh_l1"][3, 5] = value
    save_file(weights, str(folder / "model.safetensors"), metadata)
    config = json.loads((folder / "config.json").read_text())  # as if saved so (a diverged run)
    config["weights_sha256"] = weights_digest(weights)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ChatbotError, match=r"model\.safetensors: tensor rnn\.weight_hh_l1 holds 1 "
                                           r"non-finite values \(NaN or infinity\)"):
        load_checkpoint(folder)


@pytest.mark.parametrize("settings", [dict(cell="lstm", num_layers=2, hidden_size=24),
                                      dict(cell="gru", num_layers=3, hidden_size=16, embed_size=8),
                                      dict(cell="rnn", num_layers=1, hidden_size=12, tie_weights=False)])
def test_shapes_from_the_settings_are_the_models_own(settings):
    cfg = ModelConfig(vocab_size=37, **settings)
    actual = {k: tuple(v.shape) for k, v in LanguageModel(cfg).weights_for_saving().items()}
    assert dict(cfg.weight_shapes()) == actual


def edit_config(folder, **model):
    config = json.loads((folder / "config.json").read_text())
    config["model"].update(model)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("setting, value, message", [
    ("hidden_size", 10**9, r"tensor rnn\.weight_ih_l0 has shape \(384, 96\) but config\.json implies \(4000000000, 96\)"),
    ("embed_size", 10**12, r"tensor embed\.weight has shape \(\d+, 96\) but config\.json implies"),
    ("num_layers", 10**6, r"the weights do not fit config\.json \(it implies 4,000,002 tensors, the file "
                          r"has 10 and lacks rnn\.weight_ih_l2\)"),
])
def test_a_config_claiming_a_huge_model_is_refused_before_allocating(folder, setting, value, message):
    """Before the fix these raised the allocator's RuntimeError (or took the machine's memory)."""
    edit_config(folder, **{setting: value})
    tracemalloc.start()
    try:
        with pytest.raises(ChatbotError, match=r"model\.safetensors: " + message + ".*different runs, or config.json was edited"):
            load_checkpoint(folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # a million layers' 4 million tensor names are never all made (they would take ~300 MB)
    assert peak < 50 * 2**20, f"peak Python allocation {peak / 2**20:.0f} MB"


def test_a_bigger_config_costs_no_memory_before_its_mismatch_is_found(folder):
    """hidden_size 8192 with the real weights once built a 3.4 GB model before the shape check.
    Loaded in a child process, whose own peak resident memory the kernel reports."""
    edit_config(folder, hidden_size=8192)
    code = ("import sys; from chatbot.lm.checkpoint import load_checkpoint; from chatbot.errors import ChatbotError\n"
            "try:\n    load_checkpoint(sys.argv[1])\nexcept ChatbotError as e:\n    print(e); sys.exit(2)")
    done = run_measured(["-c", code, str(folder)], timeout=1800)
    assert done.returncode == 2 and "config.json implies" in done.output, done.output + done.errors
    assert done.peak_rss_mb < 1000, f"peak RSS {done.peak_rss_mb:.0f} MB"


def test_config_records_the_weights_it_was_saved_with(tiny_checkpoint, tmp_path):
    from chatbot.lm.checkpoint import weights_digest
    ckpt = load_checkpoint(tiny_checkpoint)
    assert ckpt.spec.weights_sha256 == weights_digest(ckpt.model.weights_for_saving())


def two_saves(tiny_checkpoint, folder):
    """Save a checkpoint, then a later one ("training went on"); returns the first save's files."""
    ckpt = load_checkpoint(tiny_checkpoint)
    save_checkpoint(folder, ckpt.model, ckpt.tokenizer, ckpt.spec)
    first = {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
    with torch.no_grad():
        ckpt.model.head.bias += 0.5
    save_checkpoint(folder, ckpt.model, ckpt.tokenizer,
                    replace(ckpt.spec, metrics={**ckpt.spec.metrics, "steps": 700}))
    assert load_checkpoint(folder).metrics["steps"] == 700  # the whole pair loads
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    return first


def test_a_crash_between_weights_and_config_leaves_the_previous_pair(tiny_checkpoint, tmp_path):
    """What a kill between the two renames leaves: the new weights, the previous config.json,
    and the previous weights kept aside for it. Before, the new weights loaded under the old
    config.json's settings and metrics without a warning."""
    folder = tmp_path / "ckpt"
    first = two_saves(tiny_checkpoint, folder)
    (folder / "model.previous.safetensors").write_bytes(first["model.safetensors"])
    (folder / "config.json").write_bytes(first["config.json"])
    loaded = load_checkpoint(folder)
    assert loaded.metrics["steps"] != 700
    old, _ = load_tensors(folder / "model.previous.safetensors")
    assert torch.equal(loaded.model.head.bias, old["head.bias"])


def test_weights_that_are_not_the_configs_are_refused(tiny_checkpoint, tmp_path):
    folder = tmp_path / "ckpt"
    first = two_saves(tiny_checkpoint, folder)
    (folder / "config.json").write_bytes(first["config.json"])  # and no previous weights to fall back on
    with pytest.raises(ChatbotError, match=r"model\.safetensors holds other weights than config\.json was "
                                           r"saved with .*continue it with train_lm\.py --resume"):
        load_checkpoint(folder)


def test_a_checkpoint_saved_before_the_hash_was_recorded_still_loads(folder):
    config = json.loads((folder / "config.json").read_text())
    del config["weights_sha256"]
    (folder / "config.json").write_text(json.dumps(config))
    assert load_checkpoint(folder).model is not None
