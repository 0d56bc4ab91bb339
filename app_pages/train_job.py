"""Training in a background thread, for the app: one run at a time per server, polled by the
page (a Streamlit script never blocks on it, and the worker never calls Streamlit).

The job keeps everything a page needs to draw progress (loss points, evaluations, a sample
line at each evaluation) behind a lock; `snapshot()` copies it out. Cancel asks the trainer
to stop after its current step, which evaluates and saves like a clean end.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from chatbot.chat.sampling import SamplingConfig
from chatbot.chat.session import ChatSession
from chatbot.errors import ChatbotError
from chatbot.lm.model import ModelConfig
from chatbot.lm.spec import CorpusInfo, RunSpec, TokenizerSpec, TrainConfig
from chatbot.train.loop import Trainer, train
from chatbot.train.presets import Preset


@dataclass(frozen=True)
class JobRequest:
    corpus: Path
    out: Path
    tokenizer: str  # char | bpe | unigram
    vocab_size: int | None
    preset: Preset
    time_budget: float  # seconds
    chat: bool  # the corpus is conversations: sample a reply to "hello"
    max_steps: int = 1_000_000
    eval_every: int = 50
    seed: int = 1337


@dataclass
class JobSnapshot:
    status: str  # starting | running | finished | cancelled | failed
    step: int = 0
    seconds: float = 0.0
    progress: float = 0.0  # 0..1, by steps or by time budget, whichever is further
    eta_seconds: float | None = None
    tokens_per_second: float = 0.0
    train_points: list[tuple[int, float]] = field(default_factory=list)  # (step, loss per token)
    val_points: list[tuple[int, float]] = field(default_factory=list)  # (step, nats per char)
    samples: list[tuple[int, str]] = field(default_factory=list)  # (step, sample text)
    error: str | None = None
    result: dict | None = None

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running")


class TrainingJob:
    def __init__(self, request: JobRequest):
        self.request = request
        self._lock = threading.Lock()
        self._snap = JobSnapshot("starting")
        self._trainer: Trainer | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"train {request.out.name}", daemon=True)

    def start(self) -> "TrainingJob":
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()
        if self._trainer is not None:
            self._trainer.request_stop()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            s = self._snap
            return JobSnapshot(s.status, s.step, s.seconds, s.progress, s.eta_seconds,
                               s.tokens_per_second, list(s.train_points), list(s.val_points),
                               list(s.samples), s.error, dict(s.result) if s.result else None)

    def _run(self) -> None:
        r = self.request
        settings = {**r.preset.train_settings(), "eval_every": r.eval_every}
        try:
            spec = RunSpec(TokenizerSpec(r.tokenizer, r.vocab_size), ModelConfig(**r.preset.model_settings()),
                           TrainConfig(**settings, max_steps=r.max_steps, time_budget=r.time_budget,
                                       seed=r.seed, warmup_steps=min(50, r.eval_every)),
                           CorpusInfo(str(r.corpus)),
                           command=f"(lstm-chat app: preset {r.preset.name}, budget {r.time_budget:.0f} s)")
            result = train(spec, r.out, on_event=self._on_event, on_trainer=self._attach)
        except ChatbotError as exc:
            self._finish("failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001  the page must hear about any failure
            self._finish("failed", error=f"training stopped unexpectedly: {exc!r}")
        else:
            self._finish("cancelled" if self._cancel.is_set() else "finished", result=result)

    def _attach(self, trainer: Trainer) -> None:
        self._trainer = trainer
        with self._lock:
            self._snap.status = "running"
        if self._cancel.is_set():
            trainer.request_stop()

    def _on_event(self, event: dict) -> None:
        r = self.request
        sample = self._sample() if event["type"] == "eval" else None
        with self._lock:
            s = self._snap
            if event["type"] == "step":
                s.step, s.seconds = event["step"], event["seconds"]
                s.tokens_per_second = event["tokens_per_second"]
                s.train_points.append((event["step"], event["train_loss"]))
                s.progress = min(1.0, max(s.step / r.max_steps, s.seconds / r.time_budget))
                s.eta_seconds = max(0.0, r.time_budget - s.seconds) if s.progress < 1 else 0.0
            else:
                s.val_points.append((event["steps"], event["val_nats_per_char"]))
                s.samples.append((event["steps"], sample))

    def _sample(self) -> str:
        """A short sample from the model as it is now (called between steps, in the worker)."""
        trainer = self._trainer
        if trainer is None:
            return ""
        model = trainer.model
        try:
            session = ChatSession(model, trainer.tokenizer,
                                  SamplingConfig(temperature=0.8, max_new_tokens=120, seed=0))
            pieces = session.send("hello") if self.request.chat else session.complete("\n")
            return "".join(pieces).strip()
        except (ChatbotError, RuntimeError) as exc:
            return f"(no sample: {exc})"
        finally:
            model.train()

    def _finish(self, status: str, error: str | None = None, result: dict | None = None) -> None:
        with self._lock:
            self._snap.status, self._snap.error, self._snap.result = status, error, result
            if result:
                self._snap.progress, self._snap.eta_seconds = 1.0, 0.0


class JobSlot:
    """The server's one training slot: a second run waits until the first is done."""

    def __init__(self):
        self._lock = threading.Lock()
        self.job: TrainingJob | None = None
        self.started_at: float | None = None

    def start(self, request: JobRequest) -> TrainingJob:
        with self._lock:
            if self.job is not None and self.job.snapshot().active:
                raise ChatbotError(f"a training run ({self.job.request.out.name}) is already in "
                                   f"progress on this server; wait for it or cancel it first.")
            self.job = TrainingJob(request).start()
            self.started_at = time.time()
            return self.job
