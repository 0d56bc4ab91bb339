"""Running a command as a child process and reading back its peak memory, for the benches."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
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


# The child reports its own peak resident memory (VmHWM) as it exits. getrusage/wait4's
# ru_maxrss cannot: Linux carries the high-water mark across exec, so a child spawned by a
# 1.8 GB test process "peaks" at 1.8 GB however little it uses itself.
PEAK_WRAPPER = """import atexit, os, runpy, sys
def report():
    kb = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]
    with open(os.environ['LSTM_CHAT_PEAK_FILE'], 'w') as f:
        f.write(kb)
atexit.register(report)
args = sys.argv[1:]
if args[0] == '-m':
    sys.argv = args[1:]
    runpy.run_module(args[1], run_name='__main__', alter_sys=True)
elif args[0] == '-c':
    sys.argv = ['-c', *args[2:]]
    exec(compile(args[1], '<string>', 'exec'), {'__name__': '__main__'})
else:
    sys.argv = args
    runpy.run_path(args[0], run_name='__main__')
"""


@dataclass
class Finished:
    returncode: int
    seconds: float
    peak_rss_mb: float  # the child's own peak resident set (NaN if it was killed before reporting)
    output: str  # stdout and stderr together (or stdout alone when stderr was kept apart)
    errors: str = ""  # stderr, when kept apart


def run_measured(args: list[str], log: Path | None = None, timeout: float | None = None) -> Finished:
    """Run `python ARGS...` (a script, `-m module ...` or `-c code ...`) in the repository
    root and read back its own peak RSS. Output goes to `log`, or is returned with stderr
    apart when there is no log."""
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        env = {**os.environ, "LSTM_CHAT_PEAK_FILE": str(peak)}
        cmd = [sys.executable, "-c", PEAK_WRAPPER, *args]
        start = time.perf_counter()
        if log is None:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
            output, errors = proc.stdout, proc.stderr
        else:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "w") as out:
                proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
            output, errors = log.read_text(errors="replace"), ""
        seconds = time.perf_counter() - start
        peak_mb = int(peak.read_text()) / 1024 if peak.exists() else math.nan
    return Finished(proc.returncode, seconds, peak_mb, output, errors)


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
