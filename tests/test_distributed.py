"""Training under torchrun with DistributedDataParallel (gloo on CPU): two processes, each
with half of the parallel streams, give the same run as one process with the whole batch."""

import json
import os
import subprocess
import sys

import pytest

from chatbot.chat.session import ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.chat.sampling import SamplingConfig
from conftest import ROOT

STEPS = 12
SETTINGS = ["--layers", "2", "--hidden-size", "64", "--dropout", "0", "--batch-size", "8",
            "--seq-len", "32", "--eval-every", "6", "--warmup-steps", "2", "--lr", "1e-2"]


def train_lm(corpus, out, *extra, processes: int = 1) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                 str(processes)] if processes > 1 else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*launcher, "train_lm.py", "--corpus", str(corpus), "--out", str(out),
                           *SETTINGS, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)


def losses(out) -> list[float]:
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return [r["train_loss"] if "train_loss" in r else r["val_nats_per_char"] for r in rows]


@pytest.fixture(scope="module")
def single(chat_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "single"
    r = train_lm(chat_corpus, out, "--max-steps", str(STEPS))
    assert r.returncode == 0, r.stderr
    return out


def test_two_processes_match_one_with_the_same_global_batch(chat_corpus, single, tmp_path):
    out = tmp_path / "two"
    r = train_lm(chat_corpus, out, "--max-steps", str(STEPS), processes=2)
    assert r.returncode == 0, r.stderr
    assert "2 processes, 4 streams each" in r.stdout
    assert r.stdout.count("finished at step 12") == 1  # rank 0 reports for the job
    assert losses(out) == pytest.approx(losses(single), rel=1e-4)
    assert len(losses(out)) == STEPS + 2  # one log, written once: 12 steps and 2 evaluations
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in single.iterdir())
    ckpt = load_checkpoint(out)
    reply = "".join(ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(seed=0, max_new_tokens=20)).send("hello"))
    assert isinstance(reply, str) and len(ckpt.tokenizer.encode(reply)) <= 20


def stop_and_resume(corpus, out, processes: int, processes_after: int):
    """6 steps (a run of 6), then --resume to 12; the schedule follows --max-steps, so compare
    with the same two invocations in one process."""
    r = train_lm(corpus, out, "--max-steps", str(STEPS // 2), processes=processes)
    assert r.returncode == 0, r.stderr
    r = train_lm(corpus, out, "--resume", "--max-steps", str(STEPS), processes=processes_after)
    assert r.returncode == 0, r.stderr
    assert "resuming at step 6" in r.stdout
    return losses(out)


@pytest.fixture(scope="module")
def single_resumed(chat_corpus, tmp_path_factory):
    return stop_and_resume(chat_corpus, tmp_path_factory.mktemp("ddp") / "single-resumed", 1, 1)


@pytest.mark.parametrize("processes, processes_after", [(2, 2), (2, 1), (1, 2)])
def test_resume_under_ddp_continues_exactly(chat_corpus, single_resumed, tmp_path, processes, processes_after):
    """The resume point holds every rank's carried state, so a run continues under another
    number of processes (1 -> 2: tokenize in one process, then train under torchrun)."""
    resumed = stop_and_resume(chat_corpus, tmp_path / "resumed", processes, processes_after)
    assert resumed == pytest.approx(single_resumed, rel=1e-4)


def test_a_batch_that_does_not_split_over_the_processes_is_refused(chat_corpus, tmp_path):
    r = train_lm(chat_corpus, tmp_path / "odd", "--max-steps", "2", "--batch-size", "7", processes=2)
    assert r.returncode != 0
    assert "error: --batch-size 7 (the parallel text streams of the whole job) does not split evenly " \
           "over 2 processes; use a multiple of 2." in r.stderr
