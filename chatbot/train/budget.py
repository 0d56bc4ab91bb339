"""What a time budget buys on this machine, now: time a few real optimizer steps of each model
size under the present load, then pick the size, the warm-up and the evaluation times so that
the budget is spent learning.

A run with a time budget and no size (`train_lm.py --time-budget S`, the Train page's "auto")
plans with `plan_for_budget(..., size=None)`; a run whose size was chosen keeps it and only has
its warm-up and evaluations fitted to the steps it will get (`size=(layers, hidden)`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..lm.model import LanguageModel, ModelConfig
from .device import resolve_precision, training_loss

# The sizes "auto" chooses from, smallest first. Every one trains with the cpu recipe's shape
# (128 streams x 64 tokens, bf16 where native, AdamW 4e-3, cosine to 5%; presets.py), which
# learned the most per minute on a 2-core CPU (bench/README.md).
LADDER = [(2, 128), (2, 256), (2, 384), (2, 512)]
RECIPE = {"seq_len": 64, "batch_size": 128, "lr": 4e-3, "min_lr_ratio": 0.05, "precision": "auto"}
# A size is picked only if the budget gives it this many steps: the cpu recipe beat smaller
# models with ~800 steps in 5 minutes, and a run of 40 steps never leaves the letter-soup stage.
MIN_STEPS = 600
WARMUP_FRACTION = 0.05  # of the expected steps (at least 1 step, at most 50)
EVALUATIONS = 8  # validation + sample points per run, at equal shares of the budget
MAX_TIMING_SHARE = 0.05  # the timing stops trying larger sizes once it has taken this share of the budget
WINDOWS_PER_STREAM = 8  # a small corpus gets fewer streams, so that each is read in several windows


def size_name(num_layers: int, hidden_size: int) -> str:
    return f"{num_layers}×{hidden_size}"


def step_seconds(num_layers: int, hidden_size: int, vocab_size: int, batch_size: int, seq_len: int,
                 precision: str = "fp32", device: torch.device | None = None, cell: str = "lstm",
                 steps: int = 2) -> float:
    """Seconds per optimizer step of this model, timed here and now: one untimed warm-up step,
    then `steps` real forward + backward + AdamW steps on random tokens (the same work as on
    text). Seeds a private generator only, so a run's own random numbers are untouched."""
    device = device or torch.device("cpu")
    rng_state = torch.get_rng_state()
    try:
        model = LanguageModel(ModelConfig(vocab_size=vocab_size, cell=cell, num_layers=num_layers,
                                          hidden_size=hidden_size, dropout=0.0)).to(device)
    finally:
        torch.set_rng_state(rng_state)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab_size, (batch_size, seq_len + 1), generator=g).to(device)
    bf16 = resolve_precision(precision, device) == "bf16"

    def step():
        loss, _ = training_loss(model, x[:, :-1], x[:, 1:], None, bf16)
        opt.zero_grad()
        loss.backward()
        opt.step()

    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    if time.perf_counter() - start > 2.0:
        steps = 1  # a slow machine (or a busy one): one timed step says enough
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


@dataclass
class Plan:
    num_layers: int
    hidden_size: int
    batch_size: int
    seq_len: int
    step_seconds: float  # measured for the chosen size
    expected_steps: int
    warmup_steps: int
    eval_seconds: float
    dropout: float | None  # None: keep the size's own (an explicitly chosen size)
    steps_by_size: dict[str, int] = field(default_factory=dict)  # every size timed: steps it would get

    @property
    def size(self) -> str:
        return size_name(self.num_layers, self.hidden_size)

    def describe(self, budget: float) -> str:
        others = ", ".join(f"{name} {steps:,}" for name, steps in self.steps_by_size.items())
        dropout = "" if self.dropout is None else f", dropout {self.dropout:g}"
        return (f"{self.size} gets about {self.expected_steps:,} steps in {budget:.0f} s here "
                f"({self.step_seconds * 1000:.0f} ms a step, {self.batch_size} streams × {self.seq_len}); "
                f"steps each size timed would get: {others}; warm-up {self.warmup_steps} steps{dropout}, "
                f"a validation every {self.eval_seconds:.0f} s")


def stream_count(batch_size: int, seq_len: int, train_tokens: int) -> int:
    """At most `batch_size` streams, fewer for a small corpus (each stream several windows long)."""
    return max(1, min(batch_size, train_tokens // (seq_len * WINDOWS_PER_STREAM)))


def dropout_for(epochs: float) -> float:
    """Dropout for a run that will read its corpus `epochs` times: none for a few passes (the
    cpu recipe measured it as a loss there), more as repeated reading starts to overfit (the
    default model, ~50 epochs of its corpus, trained with 0.25)."""
    return 0.0 if epochs < 4 else 0.1 if epochs < 12 else 0.2


def schedule(steps: int, budget: float) -> tuple[int, float]:
    """(warm-up steps, seconds between evaluations) for a run expected to make `steps` steps."""
    return max(1, min(50, round(WARMUP_FRACTION * steps))), budget / EVALUATIONS


def plan_for_budget(budget: float, vocab_size: int, train_tokens: int, batch_size: int, seq_len: int,
                    precision: str = "fp32", device: torch.device | None = None, cell: str = "lstm",
                    size: tuple[int, int] | None = None, timer=step_seconds) -> Plan:
    """The recipe for `budget` seconds. With `size` None, time the LADDER from the smallest up
    and take the largest size that gets at least MIN_STEPS steps (the smallest if none does);
    stop timing once a size falls short, since a larger one only gets fewer. With a `size`,
    time that one and (for the page's warning) the ladder's sizes below it."""
    batch = stream_count(batch_size, seq_len, train_tokens)
    steps_by_size: dict[str, int] = {}
    seconds: dict[tuple[int, int], float] = {}

    started = time.perf_counter()

    def steps_of(layers, hidden):
        seconds[(layers, hidden)] = timer(layers, hidden, vocab_size, batch, seq_len, precision, device, cell)
        steps = int(budget / max(seconds[(layers, hidden)], 1e-6))
        steps_by_size[size_name(layers, hidden)] = steps
        return steps

    if size is None:
        chosen = LADDER[0]
        for candidate in LADDER:
            if steps_of(*candidate) < MIN_STEPS:
                break
            chosen = candidate
            if time.perf_counter() - started > MAX_TIMING_SHARE * budget:
                break  # timing larger sizes would cost the run too much of its budget
    else:
        chosen = size
        if steps_of(*size) < MIN_STEPS:  # what smaller sizes would get, for the warning
            for candidate in LADDER:
                if (candidate[1] >= size[1] or time.perf_counter() - started > MAX_TIMING_SHARE * budget
                        or steps_of(*candidate) < MIN_STEPS):
                    break
    steps = steps_by_size[size_name(*chosen)]
    warmup, eval_seconds = schedule(steps, budget)
    epochs = steps * batch * seq_len / max(1, train_tokens)
    return Plan(chosen[0], chosen[1], batch, seq_len, seconds[chosen], steps, warmup, eval_seconds,
                None if size is not None else dropout_for(epochs), steps_by_size)


def too_few_steps_warning(plan: Plan, budget: float) -> str | None:
    """For a size chosen by hand: a warning when the budget gives it too few steps to learn,
    naming a smaller size that would get enough (if one was timed)."""
    if plan.expected_steps >= MIN_STEPS:
        return None
    minutes = f"{budget / 60:g} minutes" if budget >= 60 else f"{budget:.0f} seconds"
    better = [(name, n) for name, n in plan.steps_by_size.items() if n >= MIN_STEPS and name != plan.size]
    text = f"{plan.size} gets about {plan.expected_steps:,} steps in {minutes} here"
    if better:
        name, n = better[-1]
        text += f"; {name} would get {n:,}"
    return text + (f". Under {MIN_STEPS} steps its replies will mostly be made-up words: "
                   f"pick a smaller size or a longer budget.")
