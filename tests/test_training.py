"""Training: the loss really falls, Ctrl-C saves, --resume continues the very same run."""

import json
import math
import signal
import subprocess
import sys
import time

from dataclasses import replace

import pytest
import torch

from chatbot.lm.checkpoint import load_checkpoint
from chatbot.errors import ChatbotError
from chatbot.train.presets import PRESETS
from chatbot.train.device import native_bf16, resolve_precision
from chatbot.lm.spec import TrainConfig
from chatbot.train.loop import learning_rate, train
from conftest import ROOT, run_cli, run_spec, write_chat_corpus

SMALL = ["--tokenizer", "char", "--hidden-size", "32", "--seq-len", "16", "--batch-size", "4",
         "--lr", "0.01", "--warmup-steps", "5"]


def log_records(folder, kind="train_loss"):
    lines = (folder / "train_log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if kind in r]


def test_validation_loss_falls_within_seconds(tiny_checkpoint):
    evals = log_records(tiny_checkpoint, "val_nats_per_char")
    vocab = load_checkpoint(tiny_checkpoint).tokenizer.vocab_size
    assert [e["step"] for e in evals] == [300, 600]
    assert evals[-1]["val_nats_per_char"] < evals[0]["val_nats_per_char"] < math.log(vocab)
    assert evals[-1]["val_nats_per_char"] < 1.0  # far below a uniform guess (ln 67 = 4.2)
    assert evals[-1]["val_bits_per_char"] == pytest.approx(evals[-1]["val_nats_per_char"] / math.log(2))


def test_bpe_and_unigram_models_report_loss_per_character(chat_corpus, tmp_path):
    results = {}
    for kind in ("char", "bpe", "unigram"):
        cfg = TrainConfig(max_steps=30, seq_len=16, batch_size=4, eval_every=30, warmup_steps=5)
        results[kind] = train(run_spec(chat_corpus, cfg, kind, 400 if kind != "char" else None, hidden_size=32),
                              tmp_path / kind)
        load_checkpoint(tmp_path / kind)  # every kind chats: it loads back
    for kind, r in results.items():
        # per character, so all three sit on one scale between a perfect and a uniform guess
        assert 0 < r["val_nats_per_char"] < math.log(400) + 1, kind
    tokens_per_char = {k: json.loads((tmp_path / k / "config.json").read_text())["corpus"]["tokens"]
                       for k in results}
    assert tokens_per_char["bpe"] < tokens_per_char["char"]


def test_learning_rate_warms_up_then_decays_by_cosine():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1, max_steps=100)
    assert learning_rate(cfg, 0, 0.0) == pytest.approx(0.1)
    assert learning_rate(cfg, 9, 0.09) == pytest.approx(1.0)
    assert learning_rate(cfg, 50, 0.5) == pytest.approx(0.55)
    assert learning_rate(cfg, 100, 1.0) == pytest.approx(0.1)


def test_time_budget_stops_the_run(chat_corpus, tmp_path):
    cfg = TrainConfig(max_steps=10**6, time_budget=1.5, seq_len=16, batch_size=4, eval_every=10**6)
    result = train(run_spec(chat_corpus, cfg, hidden_size=32), tmp_path / "t")
    assert result["reason"] == "time budget reached"
    assert 0 < result["steps"] < 10**6 and result["train_seconds"] >= 1.5
    load_checkpoint(tmp_path / "t")


def start_training(out, corpus, steps):
    return subprocess.Popen([sys.executable, "train_lm.py", "--corpus", str(corpus), "--out", str(out),
                             "--max-steps", str(steps), "--eval-every", "25", *SMALL],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_saves_and_resume_reproduces_the_uninterrupted_run(tmp_path):
    corpus = write_chat_corpus(tmp_path / "chat.jsonl", repeats=40)
    steps = 300
    whole = run_cli("train_lm.py", "--corpus", str(corpus), "--out", str(tmp_path / "whole"),
                    "--max-steps", str(steps), "--eval-every", "25", *SMALL)
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "interrupted"
    proc = start_training(out, corpus, steps)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        log = out / "train_log.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= 40:  # mid-run, between evals too
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "stopped at step" in stdout and "--resume" in stdout
    stopped_at = int(stdout.split("stopped at step ")[1].split(":")[0])
    assert 0 < stopped_at < steps
    load_checkpoint(out)  # what Ctrl-C left chats already

    resumed = run_cli("train_lm.py", "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {stopped_at}" in resumed.stderr + resumed.stdout
    a, b = log_records(tmp_path / "whole"), log_records(out)
    assert [r["step"] for r in b] == list(range(1, steps + 1))
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["lr"] for r in a] == [r["lr"] for r in b]
    final = [json.loads((d / "config.json").read_text())["metrics"] for d in (tmp_path / "whole", out)]
    assert final[0]["val_nats_per_char"] == final[1]["val_nats_per_char"]
    assert final[0]["tokens_seen"] == final[1]["tokens_seen"]


def test_max_steps_counts_across_resumes(chat_corpus, tmp_path):
    first = run_cli("train_lm.py", "--corpus", str(chat_corpus), "--out", str(tmp_path / "r"),
                    "--max-steps", "20", "--eval-every", "10", *SMALL)
    assert first.returncode == 0, first.stderr
    more = run_cli("train_lm.py", "--out", str(tmp_path / "r"), "--resume", "--max-steps", "30")
    assert more.returncode == 0, more.stderr
    assert [r["step"] for r in log_records(tmp_path / "r")] == list(range(1, 31))


def test_bf16_training_learns_and_saves_fp32_weights(chat_corpus, tmp_path):
    """bf16 autocast (emulated where the CPU lacks it: slower, same arithmetic) still learns,
    the carried state stays fp32, and the checkpoint is plain fp32 that chats anywhere."""
    cfg = TrainConfig(max_steps=60, seq_len=16, batch_size=4, eval_every=30, warmup_steps=5, lr=0.01,
                      precision="bf16")
    result = train(run_spec(chat_corpus, cfg, hidden_size=32), tmp_path / "b")
    evals = log_records(tmp_path / "b", "val_nats_per_char")
    assert evals[-1]["val_nats_per_char"] < evals[0]["val_nats_per_char"]
    ckpt = load_checkpoint(tmp_path / "b")
    assert all(p.dtype == torch.float32 for p in ckpt.model.parameters())
    assert ckpt.spec.training.precision == "bf16" and result["steps"] == 60


def test_bf16_that_fails_here_falls_back_under_auto_and_is_refused_when_asked(chat_corpus, tmp_path, monkeypatch):
    """As an older cuDNN does for its RNN kernels: the LSTM refuses bfloat16 under autocast."""
    import chatbot.train.device

    real_forward = torch.nn.LSTM.forward

    def no_bf16(self, *args, **kwargs):
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("\"_thnn_fused_lstm_cell\" not implemented for 'BFloat16'\nmore detail")
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.LSTM, "forward", no_bf16)
    monkeypatch.setattr(chatbot.train.device, "native_bf16", lambda device: True)
    cfg = TrainConfig(max_steps=3, seq_len=16, batch_size=4, eval_every=3)
    with pytest.raises(ChatbotError, match=r"--precision bf16 does not work for this model on cpu "
                                           r"\(\"_thnn_fused_lstm_cell\" not implemented for 'BFloat16'\); "
                                           r"use --precision fp32"):
        train(run_spec(chat_corpus, replace(cfg, precision="bf16"), hidden_size=32), tmp_path / "asked")
    result = train(run_spec(chat_corpus, replace(cfg, precision="auto"), hidden_size=32), tmp_path / "auto")
    assert result["steps"] == 3
    assert load_checkpoint(tmp_path / "auto").spec.training.precision == "fp32"


def test_precision_auto_resolves_to_what_the_hardware_has():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(ChatbotError, match="bf16 is not supported on MPS"):
        resolve_precision("bf16", torch.device("mps"))
    with pytest.raises(ChatbotError, match="--precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(ChatbotError, match="--min-lr-ratio"):
        TrainConfig(min_lr_ratio=1.5)


def test_preset_fills_unset_flags_and_explicit_flags_win(chat_corpus, tmp_path):
    r = run_cli("train_lm.py", "--corpus", str(chat_corpus), "--out", str(tmp_path / "p"), "--preset", "cpu",
                "--hidden-size", "32", "--embed-size", "0", "--precision", "fp32", "--batch-size", "4",
                "--time-budget", "2", "--eval-every", "1000000")
    assert r.returncode == 0, r.stderr
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    cpu = PRESETS["cpu"]
    assert config["model"]["num_layers"] == cpu.num_layers and config["model"]["hidden_size"] == 32
    t = config["training"]
    assert (t["seq_len"], t["lr"], t["min_lr_ratio"]) == (cpu.seq_len, cpu.lr, cpu.min_lr_ratio)
    assert (t["batch_size"], t["precision"], t["eval_every"]) == (4, "fp32", 1000000)
    assert t["max_steps"] is None and t["time_budget"] == 2  # a budget alone sets no step limit
