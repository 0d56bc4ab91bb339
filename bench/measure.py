"""Running a command as a child process and reading back its peak memory, for the benches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
