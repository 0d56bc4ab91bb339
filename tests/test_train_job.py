"""The app's training: a real train_lm.py child followed through its run folder: progress,
evaluations with samples along the way, the verdict, cancel, one at a time, and a server that
goes away mid-run (the child stops and saves; a new server shows the run)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from app_pages.catalog import list_checkpoints
from app_pages.train_job import JOB_FILE, JobRequest, JobSlot, pid_runs
from chatbot.errors import ChatbotError
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.train.presets import PRESETS
from chatbot.train.run_state import read_run_step
from conftest import CONVERSATIONS, ROOT


def request(corpus, out, budget, preset=None):
    return JobRequest(corpus=corpus, out=out, tokenizer="char", vocab_size=None,
                      preset=PRESETS[preset] if preset else None, time_budget=budget)


def wait_for(job, predicate, timeout=900):
    deadline = time.time() + timeout
    while time.time() < deadline:
        snap = job.snapshot()
        if predicate(snap):
            return snap
        time.sleep(0.1)
    raise AssertionError(f"timed out; last snapshot {job.snapshot()}")


def test_a_run_shows_evaluations_and_samples_along_the_way_then_a_verdict(chat_corpus, tmp_path):
    slot = JobSlot(tmp_path / "data")
    job = slot.start(request(chat_corpus, tmp_path / "models" / "mine", budget=24.0))
    running = wait_for(job, lambda s: len(s.samples) >= 2 or not s.active)
    assert running.active, running.error  # evaluations and samples arrive before the end
    assert running.size.startswith("2×") and "steps in 24 s" in running.plan
    snap = wait_for(job, lambda s: not s.active)
    assert snap.status == "finished", snap.error
    assert snap.progress == 1.0
    assert [p[0] for p in snap.train_points] == list(range(1, snap.step + 1))
    assert len(snap.val_points) >= 5 and len(snap.samples) == len(snap.val_points)
    seconds = [p[1] for p in snap.val_points]
    assert seconds[0] < 24 / 3  # the first comes early: at equal shares of the budget
    prompts = {text for conv in CONVERSATIONS for role, text in conv if role == "user"}
    assert all(s["prompt"] in prompts and isinstance(s["reply"], str) for s in snap.samples)
    q = snap.quality
    assert q["verdict"] and q["val_nats_per_char"] == pytest.approx(snap.result["val_nats_per_char"])
    assert len(q["samples"]) >= 5 and q["reason"] == "time budget reached"
    assert q["corpus_words"] is None or 0 <= q["corpus_words"] <= 1
    assert [i.name for i in list_checkpoints(tmp_path / "models") if i.valid] == ["mine"]
    load_checkpoint(tmp_path / "models" / "mine")
    assert not pid_runs(job.pid, job.out)


def test_cancel_keeps_the_model_trained_so_far_and_frees_the_slot(chat_corpus, tmp_path):
    slot = JobSlot(tmp_path / "data")
    job = slot.start(request(chat_corpus, tmp_path / "a", budget=600, preset="tiny"))
    wait_for(job, lambda s: s.step >= 5)
    with pytest.raises(ChatbotError, match="already in progress"):
        slot.start(request(chat_corpus, tmp_path / "b", budget=5))
    job.cancel()
    snap = wait_for(job, lambda s: not s.active)
    assert snap.status == "cancelled" and snap.result["steps"] == snap.step and snap.progress < 1
    assert snap.quality["reason"] == "stopped"
    load_checkpoint(tmp_path / "a")  # what Cancel kept chats
    second = slot.start(request(chat_corpus, tmp_path / "b", budget=2, preset="tiny"))
    assert wait_for(second, lambda s: not s.active).status == "finished"


def test_a_failing_run_reports_the_reason(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("   ")
    job = JobSlot(tmp_path / "data").start(request(empty, tmp_path / "m", budget=5))
    snap = wait_for(job, lambda s: not s.active)
    assert snap.status == "failed" and "the corpus is empty" in snap.error


SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from app_pages.train_job import JobRequest, JobSlot
job = JobSlot(Path({data!r})).start(JobRequest(Path({corpus!r}), Path({out!r}), "char", None, None, 600.0))
print(job.pid, flush=True)
time.sleep(3600)
"""


def test_a_server_that_goes_away_leaves_no_process_and_a_new_one_shows_the_run(chat_corpus, tmp_path):
    data, out = tmp_path / "data", tmp_path / "models" / "long"
    server = subprocess.Popen([sys.executable, "-c", SERVER.format(root=str(ROOT), data=str(data),
                                                                  corpus=str(chat_corpus), out=str(out))],
                              stdout=subprocess.PIPE, text=True)
    child = int(server.stdout.readline())
    slot = JobSlot(data)  # what a second server would see while the first still runs it
    assert wait_for(slot.job, lambda s: s.step >= 3 and s.val_points).status == "running"
    server.send_signal(signal.SIGKILL)  # no chance to clean up
    server.wait()
    deadline = time.time() + 300  # it stops after its current step and saves: generous on a busy machine
    while pid_runs(child, out) and time.time() < deadline:
        time.sleep(0.2)
    assert not pid_runs(child, out), "the training process outlived its server"
    restarted = JobSlot(data)
    snap = wait_for(restarted.job, lambda s: not s.active, timeout=600)
    assert snap.status == "cancelled" and snap.quality["reason"] == "stopped"
    # It saved where it stopped: the resume point is at its last step. (config.json's metrics
    # are the best evaluation's, which is an earlier step when the last one was no better.)
    assert read_run_step(out) == snap.step and snap.result["steps"] <= snap.step
    load_checkpoint(out)
    assert json.loads((data / JOB_FILE).read_text())["out"] == str(out)
    assert os.path.exists(out / "quality.json")
