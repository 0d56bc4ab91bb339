"""Model-size presets for people who would rather not pick hyper-parameters, and a quick
measurement of what an epoch costs on this machine with each."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..lm.model import LanguageModel, ModelConfig
from .device import resolve_precision, training_loss


@dataclass(frozen=True)
class Preset:
    name: str
    num_layers: int
    hidden_size: int
    seq_len: int
    batch_size: int
    lr: float
    dropout: float
    about: str
    embed_size: int = 0  # 0: the hidden size, tied to the head
    precision: str = "fp32"  # auto: bf16 where the hardware has it (see device.resolve_precision)
    min_lr_ratio: float = 0.1
    eval_every: int = 100  # an evaluation of a big model costs seconds of a time budget

    def model_settings(self) -> dict:
        return {"num_layers": self.num_layers, "hidden_size": self.hidden_size,
                "embed_size": self.embed_size, "dropout": self.dropout}

    def train_settings(self) -> dict:
        return {"seq_len": self.seq_len, "batch_size": self.batch_size, "lr": self.lr,
                "min_lr_ratio": self.min_lr_ratio, "precision": self.precision,
                "eval_every": self.eval_every}


PRESETS = {p.name: p for p in [
    Preset("tiny", 1, 128, 64, 16, 5e-3, 0.0, "seconds per epoch; for trying things out"),
    Preset("small", 2, 256, 128, 32, 3e-3, 0.1, "a good first model on a CPU"),
    Preset("medium", 2, 352, 128, 32, 3e-3, 0.25, "the default model's size; ~10 minutes for 200 K characters"),
    # The best validation loss per minute we found on a 2-core CPU (bench/quality_per_time.py):
    # wide, many short streams (128 x 64: a GEMM big enough to keep the cores busy while
    # updates stay frequent), bf16 matmuls where the CPU has them, cosine to 5% of a high lr,
    # no dropout (a few epochs do not overfit; dropout cost 0.02 nats/char and 7% speed).
    Preset("cpu", 2, 512, 64, 128, 4e-3, 0.0, "the most learning per minute on a CPU, given a "
           "time budget of 5 minutes or more", precision="auto", min_lr_ratio=0.05, eval_every=250),
]}


def seconds_per_step(preset: Preset, vocab_size: int, steps: int = 2) -> float:
    """Time a few real optimizer steps of this preset on random tokens (after one warm-up)."""
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=vocab_size, **preset.model_settings()))
    opt = torch.optim.AdamW(model.parameters(), lr=preset.lr)
    x = torch.randint(0, vocab_size, (preset.batch_size, preset.seq_len + 1))
    state = model.initial_state(preset.batch_size)
    bf16 = resolve_precision(preset.precision, torch.device("cpu")) == "bf16"

    def step():
        loss, _ = training_loss(model, x[:, :-1], x[:, 1:], state, bf16)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def epoch_seconds(preset: Preset, tokens: int, step_seconds: float) -> float:
    """One pass over `tokens` training tokens at the measured step time."""
    return tokens / (preset.batch_size * preset.seq_len) * step_seconds
