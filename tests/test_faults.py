"""Training survives faults: kill -9 at any moment (mid-step or mid-write) leaves a loadable
checkpoint and a resume point that continues the very same run; a full disk or a failed write
is reported and never damages what was saved before."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import chatbot.train.run_state
import chatbot.train.loop
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.errors import ChatbotError
from chatbot.train.run_state import LATEST, RESUME_DIR
from chatbot.lm.spec import TrainConfig
from chatbot.train.loop import train
from conftest import ROOT, run_cli, run_spec, write_chat_corpus
from test_training import SMALL, log_records

STEPS = ["--max-steps", "150", "--eval-every", "50", "--checkpoint-every", "1"]


def snapshot_step(out) -> int:
    try:
        return int((out / RESUME_DIR / LATEST).read_text().split("-")[1])
    except (FileNotFoundError, IndexError, ValueError):
        return -1


def debris(out) -> bool:
    """Signs that a kill landed mid-write: a snapshot LATEST does not name, or a .tmp file."""
    root = out / RESUME_DIR
    named = (root / LATEST).read_text().strip() if (root / LATEST).exists() else None
    return any(p.is_dir() and p.name != named for p in root.iterdir()) or \
        any(p.suffix == ".tmp" for p in out.rglob("*"))


def test_sigkill_at_many_moments_then_resume_reproduces_the_uninterrupted_run(tmp_path):
    corpus = write_chat_corpus(tmp_path / "chat.jsonl", repeats=40)
    whole = run_cli("train_lm.py", "--corpus", str(corpus), "--out", str(tmp_path / "whole"), *STEPS, *SMALL)
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "killed"
    kills, mid_write = 0, 0
    for delay in [0.0, 0.002, 0.005, 0.01, 0.02, 0.004, 0.001, 0.03]:
        first = snapshot_step(out) < 0
        args = ["--corpus", str(corpus)] if first else ["--resume"]
        proc = subprocess.Popen([sys.executable, "train_lm.py", "--out", str(out), *args, *STEPS, *SMALL],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        start_step, deadline = snapshot_step(out), time.time() + 60
        while snapshot_step(out) <= start_step + 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        if proc.poll() is not None:
            break  # finished before the kill
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
        mid_write += debris(out)
        if (out / "config.json").exists():
            load_checkpoint(out)  # what is on disk chats, whatever the moment of the kill
        assert 0 < snapshot_step(out) < 150
    assert kills >= 4
    assert mid_write >= 1, "no kill landed during a checkpoint write; the test proved less than it says"

    resumed = run_cli("train_lm.py", "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = log_records(tmp_path / "whole"), log_records(out)
    assert [r["step"] for r in b] == list(range(1, 151))
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    final = [json.loads((d / "config.json").read_text())["metrics"] for d in (tmp_path / "whole", out)]
    assert final[0]["val_nats_per_char"] == final[1]["val_nats_per_char"]
    assert not debris(out)  # the next save cleared what the kills left


def test_a_failed_write_stops_the_run_and_keeps_the_previous_resume_point(chat_corpus, tmp_path, monkeypatch):
    real = chatbot.train.run_state.save_tensors
    calls = []

    def disk_fills_up(path, tensors, metadata=None):
        calls.append(path)
        if len(calls) > 2:  # the first snapshot (two tensor files) fits, the next does not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, tensors, metadata)

    monkeypatch.setattr(chatbot.train.run_state, "save_tensors", disk_fills_up)
    cfg = TrainConfig(max_steps=40, seq_len=16, batch_size=4, eval_every=20, checkpoint_every=5, warmup_steps=5)
    with pytest.raises(ChatbotError, match="could not write the resume point .*No space left on device"
                                           ".*previous one is kept.*--resume"):
        train(run_spec(chat_corpus, cfg, hidden_size=32), tmp_path / "full")
    monkeypatch.undo()
    out = tmp_path / "full"
    assert snapshot_step(out) == 5 and not debris(out)
    more = run_cli("train_lm.py", "--out", str(out), "--resume")
    assert more.returncode == 0, more.stderr
    assert [r["step"] for r in log_records(out)] == list(range(1, 41))


def test_too_little_disk_space_is_refused_before_training(chat_corpus, tmp_path, monkeypatch):
    class Usage:
        total, used, free = 10**9, 10**9 - 50_000, 50_000

    monkeypatch.setattr(chatbot.train.loop.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(ChatbotError, match=r"only 0\.1 MB free .* need about .* MB"):
        train(run_spec(chat_corpus, TrainConfig(max_steps=5, seq_len=16, batch_size=4), hidden_size=32),
              tmp_path / "small-disk")
    assert not (tmp_path / "small-disk" / "train_log.jsonl").exists()


def test_a_token_cache_that_would_not_fit_is_refused_before_it_is_written(tmp_path, monkeypatch):
    (tmp_path / "big.txt").write_text("the cell state carries memory\n" * 100_000, encoding="utf-8")  # 3 MB

    class Usage:  # room for this model's checkpoints, not for 3M uint16 ids
        total, used, free = 10**9, 10**9 - 4_000_000, 4_000_000

    monkeypatch.setattr(chatbot.train.loop.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(ChatbotError, match=r"only 4\.0 MB free .* need about 0\.\d MB and its token "
                                           r"cache 6\.0 MB\. Free some space"):
        train(run_spec(tmp_path / "big.txt", TrainConfig(max_steps=5, seq_len=16, batch_size=4), hidden_size=32,
                       num_layers=1), tmp_path / "out")
    assert not (tmp_path / "out" / "token-cache").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_out_folder_is_refused(chat_corpus, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        r = run_cli("train_lm.py", "--corpus", str(chat_corpus), "--out", str(locked / "m"), "--max-steps", "2")
        assert r.returncode == 2 and "cannot write to --out" in r.stderr
    finally:
        locked.chmod(0o700)


def test_a_diverging_loss_stops_the_run_and_keeps_the_last_good_checkpoint(chat_corpus, tmp_path):
    cfg = TrainConfig(max_steps=200, seq_len=16, batch_size=4, eval_every=1, warmup_steps=1, lr=1e6, grad_clip=1e9)
    with pytest.raises(ChatbotError, match=r"the loss became (nan|inf) at step \d+; stopping. The last good "
                                           r"checkpoint is kept. Lower --lr"):
        train(run_spec(chat_corpus, cfg, hidden_size=32), tmp_path / "nan")
    ckpt = load_checkpoint(tmp_path / "nan")
    assert all(p.isfinite().all() for p in ckpt.model.parameters())
