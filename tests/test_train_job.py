"""The app's background training: progress to poll, a sample per evaluation, cancel, one at a time."""

import time

import pytest

from app_pages.catalog import list_checkpoints
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.errors import ChatbotError
from chatbot.train.presets import PRESETS, epoch_seconds, seconds_per_step
from app_pages.train_job import JobRequest, JobSlot


def request(corpus, out, budget, **kw):
    return JobRequest(corpus=corpus, out=out, tokenizer="char", vocab_size=None, preset=PRESETS["tiny"],
                      time_budget=budget, chat=True, eval_every=20, **kw)


def wait_for(job, predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        snap = job.snapshot()
        if predicate(snap):
            return snap
        time.sleep(0.05)
    raise AssertionError(f"timed out; last snapshot {job.snapshot()}")


def test_a_job_trains_reports_progress_and_leaves_a_checkpoint(chat_corpus, tmp_path):
    slot = JobSlot()
    job = slot.start(request(chat_corpus, tmp_path / "models" / "mine", budget=3.0))
    snap = wait_for(job, lambda s: not s.active)
    assert snap.status == "finished", snap.error
    assert snap.progress == 1.0 and snap.step > 20
    assert [p[0] for p in snap.train_points] == list(range(1, snap.step + 1))
    assert len(snap.val_points) == len(snap.samples) >= 2
    assert snap.val_points[-1][1] < snap.val_points[0][1]  # it learned something
    assert all(isinstance(text, str) for _, text in snap.samples) and snap.samples[-1][1]
    assert snap.result["val_nats_per_char"] > 0
    assert [i.name for i in list_checkpoints(tmp_path / "models") if i.valid] == ["mine"]
    load_checkpoint(tmp_path / "models" / "mine")


def test_cancel_keeps_the_last_checkpoint_and_frees_the_slot(chat_corpus, tmp_path):
    slot = JobSlot()
    job = slot.start(request(chat_corpus, tmp_path / "a", budget=600))
    wait_for(job, lambda s: s.step >= 5)
    with pytest.raises(ChatbotError, match="already in progress"):
        slot.start(request(chat_corpus, tmp_path / "b", budget=5))
    job.cancel()
    snap = wait_for(job, lambda s: not s.active)
    assert snap.status == "cancelled" and snap.result["steps"] == snap.step < 1000
    load_checkpoint(tmp_path / "a")  # what Cancel kept chats
    second = slot.start(request(chat_corpus, tmp_path / "b", budget=1))
    assert wait_for(second, lambda s: not s.active).status == "finished"


def test_a_failing_job_reports_the_reason(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("   ")
    job = JobSlot().start(request(empty, tmp_path / "m", budget=5))
    snap = wait_for(job, lambda s: not s.active)
    assert snap.status == "failed" and "the corpus is empty" in snap.error


def test_epoch_estimate_uses_a_measured_step_time():
    tiny = PRESETS["tiny"]
    step = seconds_per_step(tiny, vocab_size=100)
    assert step > 0
    tokens = 10 * tiny.batch_size * tiny.seq_len
    assert epoch_seconds(tiny, tokens, step) == pytest.approx(10 * step)
