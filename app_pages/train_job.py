"""Training for the app: `train_lm.py` as a child process, followed through its run folder.

The child is the command line itself, so it trains at the command line's speed, and the
server's Python never shares a lock or a core's worth of work with it. The page reads what
the child writes as it goes (OUT/train_log.jsonl: a line per step and per evaluation;
OUT/samples.jsonl: a sample reply per evaluation; OUT/run.json, then config.json and at the
end OUT/quality.json with the verdict), once a second, reading only what is new.

One run at a time per server. Cancel sends the child Ctrl-C (SIGINT): it stops after its
current step and saves like a clean end. The child watches the server (its parent) and stops
the same way if the server goes away, so a restart never leaves a process behind; the last
run is named in DATA/train-job.json, so a restarted server shows it again (and follows it to
its end if it is still saving).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from chatbot.atomic import atomic_write
from chatbot.chat.quality import QUALITY_FILE, read_quality, read_samples
from chatbot.errors import ChatbotError
from chatbot.train.loop import LOG_FILE
from chatbot.train.presets import Preset

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUDGET_MINUTES = 3.0  # the Train page's budget until changed (bench/train_page_quality.py)
# The Train page's tokenizer until changed: subwords, their number fitted to the corpus (bpe
# beat char on a 200 KB chat upload in the same budget: bench/README.md#training-on-the-train-page)
DEFAULT_TOKENIZER = "bpe"
JOB_FILE = "train-job.json"  # in the data folder: the last run this server started
OUTPUT_FILE = "train_output.txt"  # in the run folder: what train_lm.py printed


@dataclass(frozen=True)
class JobRequest:
    corpus: Path
    out: Path
    tokenizer: str  # char | bpe | unigram
    vocab_size: int | None
    preset: Preset | None  # None: the budget picks the size (train_lm.py --time-budget alone)
    time_budget: float  # seconds
    seed: int = 1337

    def command(self) -> list[str]:
        cmd = [sys.executable, str(ROOT / "train_lm.py"), "--corpus", str(self.corpus), "--out", str(self.out),
               "--tokenizer", self.tokenizer, "--time-budget", f"{self.time_budget:g}", "--seed", str(self.seed)]
        if self.vocab_size is not None:
            cmd += ["--vocab-size", str(self.vocab_size)]
        if self.preset is not None:
            cmd += ["--preset", self.preset.name]
        return cmd


@dataclass
class JobSnapshot:
    status: str  # starting | running | finished | cancelled | interrupted | failed
    step: int = 0
    seconds: float = 0.0
    progress: float = 0.0  # 0..1 of the time budget
    eta_seconds: float | None = None
    tokens_per_second: float = 0.0
    train_points: list[tuple[int, float, float]] = field(default_factory=list)  # (step, seconds, loss/token)
    val_points: list[tuple[int, float, float]] = field(default_factory=list)  # (step, seconds, nats/char)
    samples: list[dict] = field(default_factory=list)  # samples.jsonl records
    size: str = ""  # "2×384", once the run has started
    plan: str = ""  # what the budget bought, in words
    error: str | None = None
    result: dict | None = None  # config.json's metrics
    quality: dict | None = None  # quality.json: corpus-word share, validation, verdict, samples

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running")


def pid_runs(pid: int, out: Path) -> bool:
    """Whether `pid` is (still) a train_lm.py writing to `out` (a pid can be reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc here: trust the pid
    return any(a.endswith(b"train_lm.py") for a in cmdline) and str(out).encode() in cmdline


class TrainingJob:
    """One run: the child process (or, after a server restart, its pid) and its folder."""

    def __init__(self, request: JobRequest, pid: int | None = None, started: float | None = None):
        self.request = request
        self.out = Path(request.out)
        self.pid, self.started = pid, started or time.time()
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self._log_offset = 0
        self._snap = JobSnapshot("starting")

    def start(self, data: Path) -> "TrainingJob":
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / OUTPUT_FILE, "wb") as output:
            self._proc = subprocess.Popen(
                self.request.command(), cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, "LSTM_CHAT_STOP_WITH_PARENT": "1", "PYTHONUNBUFFERED": "1"})
        self.pid = self._proc.pid
        data.mkdir(parents=True, exist_ok=True)
        r = self.request
        atomic_write(data / JOB_FILE, json.dumps({
            "pid": self.pid, "started": self.started, "out": str(self.out), "corpus": str(r.corpus),
            "tokenizer": r.tokenizer, "vocab_size": r.vocab_size, "time_budget": r.time_budget,
            "preset": r.preset.name if r.preset else None}).encode())
        return self

    def cancel(self) -> None:
        """Ask the child to stop after its current step and save (what Ctrl-C does)."""
        self._cancelled = True
        if self.pid is not None and self._alive():
            try:
                os.kill(self.pid, signal.SIGINT)
            except OSError:
                pass

    def _alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self.pid is not None and pid_runs(self.pid, self.out)

    def wait(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.time() + timeout
        while self._alive():
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"training {self.out.name} still running after {timeout} s")
            time.sleep(0.1)

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            alive = self._alive()  # first: whatever it wrote before ending is then read below
            s = self._snap
            self._read_log(s)
            s.samples = read_samples(self.out)
            if not s.size:
                self._read_run(s)
            budget = self.request.time_budget
            s.progress = min(1.0, s.seconds / budget) if budget else 0.0
            s.eta_seconds = max(0.0, budget - s.seconds)
            if alive:
                s.status = "running" if s.step or s.size else "starting"
            else:
                self._ended(s)
            return JobSnapshot(**{**vars(s), "train_points": list(s.train_points),
                                  "val_points": list(s.val_points), "samples": list(s.samples)})

    def _read_log(self, s: JobSnapshot) -> None:
        """The lines added to train_log.jsonl since the last read (a torn last line waits)."""
        try:
            with open(self.out / LOG_FILE, "rb") as f:
                f.seek(self._log_offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self._log_offset += end
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "train_loss" in record:
                if s.train_points and record["step"] <= s.train_points[-1][0]:  # a resume rewrote it
                    s.train_points = [p for p in s.train_points if p[0] < record["step"]]
                s.train_points.append((record["step"], record["seconds"], record["train_loss"]))
                s.step, s.seconds = record["step"], record["seconds"]
                recent = [p for p in s.train_points[-50:]]
                if len(recent) >= 2 and recent[-1][1] > recent[0][1]:
                    per_step = record["tokens_seen"] / max(1, record["step"])
                    s.tokens_per_second = (recent[-1][0] - recent[0][0]) * per_step / (recent[-1][1] - recent[0][1])
            elif "val_nats_per_char" in record:
                s.val_points.append((record["step"], record["seconds"], record["val_nats_per_char"]))

    def _read_run(self, s: JobSnapshot) -> None:
        try:
            run = json.loads((self.out / "run.json").read_text(encoding="utf-8"))
            model = run["model"]
            s.size = f"{model['num_layers']}×{model['hidden_size']}"
            s.plan = run["training"].get("plan", "")
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def _ended(self, s: JobSnapshot) -> None:
        if s.status not in ("starting", "running"):
            return
        returncode = self._proc.returncode if self._proc is not None else None
        s.quality = read_quality(self.out)
        try:
            s.result = json.loads((self.out / "config.json").read_text(encoding="utf-8")).get("metrics")
        except (OSError, ValueError):
            s.result = None
        if s.quality is not None and returncode in (0, None):
            stopped = s.quality.get("reason") == "stopped"
            s.status = "cancelled" if stopped or self._cancelled else "finished"
            s.progress, s.eta_seconds = (s.progress if stopped else 1.0), 0.0
        elif s.result:
            s.status = "interrupted"  # killed: the model of the last evaluation is kept
            s.error = self._error()
        else:
            s.status = "failed"
            s.error = self._error()

    def _error(self) -> str:
        try:
            lines = (self.out / OUTPUT_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "the training process ended without a word"
        errors = [line[len("error: "):] for line in lines if line.startswith("error: ")]
        if errors:
            return errors[-1]
        tail = [line for line in lines if line.strip()][-3:]
        return "the training process ended unexpectedly: " + (" / ".join(tail) or "no output")


class JobSlot:
    """The server's one training slot. A new slot (a restarted server) takes up the last run
    from DATA/train-job.json: still running (saving after the old server went), or ended."""

    def __init__(self, data: Path):
        self.data = Path(data)
        self._lock = threading.Lock()
        self.job: TrainingJob | None = self._last_run()

    def _last_run(self) -> TrainingJob | None:
        try:
            record = json.loads((self.data / JOB_FILE).read_text(encoding="utf-8"))
            request = JobRequest(Path(record["corpus"]), Path(record["out"]), record["tokenizer"],
                                 record["vocab_size"], None, float(record["time_budget"]))
            if not Path(record["out"]).is_dir():
                return None
            return TrainingJob(request, pid=int(record["pid"]), started=float(record["started"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def start(self, request: JobRequest) -> TrainingJob:
        with self._lock:
            if self.job is not None and self.job.snapshot().active:
                raise ChatbotError(f"a training run ({self.job.request.out.name}) is already in "
                                   f"progress on this server; wait for it or cancel it first.")
            self.job = TrainingJob(request).start(self.data)
            return self.job


__all__ = ["JobRequest", "JobSlot", "JobSnapshot", "TrainingJob", "QUALITY_FILE"]
