"""Running a command as a child process and reading back its peak memory, for the benches."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def smoke_corpus(folder: Path) -> str:
    """The test suite's small chat corpus (tests/conftest.py) written into `folder`, for the
    benches' --smoke runs."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import write_chat_corpus
    return str(write_chat_corpus(folder / "chat.jsonl"))


def per_second(amount: float, seconds: float) -> float:
    """amount / seconds, or NaN (printed "nan") when the interval is not positive. Clocks have a
    resolution (the training log keeps milliseconds), so on a busy machine two readings can
    be equal; a bench must print its table then, not stop on a ZeroDivisionError."""
    return amount / seconds if seconds > 0 else math.nan


def ratio(a: float, b: float) -> float:
    """a / b for two measured quantities, NaN when b is zero (see per_second)."""
    return a / b if b else math.nan


def training_rate(steps: list[dict], skip: int = 2) -> float:
    """Tokens per second over a training log's step records, leaving out the first `skip`
    steps (allocation, oneDNN set-up) when that leaves a positive interval; otherwise over
    the whole run (from zero tokens at zero seconds)."""
    if not steps:
        return math.nan
    last = steps[-1]
    for first in steps[min(skip, len(steps) - 1)::-1]:  # the latest warm step that leaves an interval
        if last["seconds"] > first["seconds"]:
            return per_second(last["tokens_seen"] - first["tokens_seen"], last["seconds"] - first["seconds"])
    return per_second(last["tokens_seen"], last["seconds"])


@dataclass
class Finished:
    returncode: int
    seconds: float
    peak_rss_mb: float  # the child's own peak resident set (getrusage of that one child)
    output: str  # stdout and stderr together


def run_measured(args: list[str], log: Path) -> Finished:
    """Run `python ARGS...` in the repository root, output to `log`, and wait for it with
    wait4 so the peak RSS is this child's alone (RUSAGE_CHILDREN would be the max of all)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    kilobytes = usage.ru_maxrss  # Linux reports kilobytes
    return Finished(proc.returncode, time.perf_counter() - start, kilobytes / 1024,
                    log.read_text(errors="replace"))


@dataclass
class TrainingRun:
    log: list[dict]  # train_log.jsonl: one record per step, one per evaluation
    config: dict  # the checkpoint's config.json
    peak_rss_mb: float

    @property
    def steps(self) -> list[dict]:
        return [r for r in self.log if "train_loss" in r]


def run_train_lm(args: list[str], out: Path) -> TrainingRun:
    """`python train_lm.py ARGS --out OUT` as a measured child; stops the bench if it fails."""
    cmd = ["train_lm.py", *args, "--out", str(out)]
    done = run_measured(cmd, out.with_suffix(".log"))
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.output[-2000:]}")
    return read_training_run(out, done.peak_rss_mb)


def read_training_run(out: Path, peak_rss_mb: float) -> TrainingRun:
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return TrainingRun(log, json.loads((out / "config.json").read_text()), peak_rss_mb)
