"""The language model: embedding -> N stacked recurrent layers -> linear head.

The recurrent layers are torch's own nn.LSTM / nn.GRU / nn.RNN (cuDNN on a GPU) for training
and for feeding whole messages; `stepper.py` runs the same weights one token at a time
for generation, and `gates.py` gate by gate. Both read a layer's weights through
`gate_blocks()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Iterator

import torch
from torch import nn

from ..errors import ChatbotError
from .copy import CopyHead
from .state import RecurrentState

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
# Each cell's gates in the textbook's order (the LSTM's f, i, C̃, o), and the order torch
# stacks them in its weight matrices (i, f, g = C̃, o).
GATES = {"lstm": ("forget", "input", "candidate", "output"), "gru": ("reset", "update", "candidate"),
         "rnn": ("hidden",)}
TORCH_ORDER = {"lstm": ("input", "forget", "candidate", "output"), "gru": ("reset", "update", "candidate"),
               "rnn": ("hidden",)}


@dataclass
class GateBlock:
    """One gate's weights in a layer: it computes W_x·x_t + b_x + W_h·h_{t-1} + b_h."""

    w_x: torch.Tensor  # (hidden, input)
    w_h: torch.Tensor  # (hidden, hidden)
    b_x: torch.Tensor  # (hidden,)
    b_h: torch.Tensor  # (hidden,)

    @property
    def W(self) -> torch.Tensor:
        """[W_h | W_x], acting on [h_{t-1}, x_t] as the textbook writes it."""
        return torch.cat([self.w_h, self.w_x], dim=1)

    @property
    def b(self) -> torch.Tensor:
        return self.b_h + self.b_x


@dataclass
class ModelConfig:
    """Every hyper-parameter that fixes the weights' shapes; stored in config.json."""

    vocab_size: int = 0  # 0 until the tokenizer is trained: train() sets it to the tokenizer's size
    cell: str = "lstm"
    num_layers: int = 2
    hidden_size: int = 256
    embed_size: int = 0  # 0 means "same as hidden_size", which lets the head share the embedding
    dropout: float = 0.1
    tie_weights: bool = True
    copy_window: int = 0  # > 0: a copy head over the last this many positions (copy.py)
    copy_key_size: int = 32  # the copy head's key and query size
    copy_order: int = 1  # 2: keys and queries also carry the token two back (copy.py)

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ChatbotError(f"unknown cell {self.cell!r}: choose one of {', '.join(CELLS)}.")
        if not isinstance(self.vocab_size, int) or self.vocab_size < 0:
            raise ChatbotError(f"vocab_size must be a whole number (0: the tokenizer's), got {self.vocab_size!r}.")
        for name in ("num_layers", "hidden_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ChatbotError(f"model setting {name} must be a positive whole number, "
                                   f"got {getattr(self, name)!r}.")
        if not isinstance(self.embed_size, int) or self.embed_size < 0:
            raise ChatbotError(f"embed_size must be 0 (same as hidden) or positive, got {self.embed_size!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ChatbotError(f"dropout must be in [0, 1), got {self.dropout}.")
        for name in ("copy_window", "copy_key_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < (0 if name == "copy_window" else 1):
                raise ChatbotError(f"model setting {name} must be a whole number (copy_window 0: no copy "
                                   f"head), got {getattr(self, name)!r}.")
        if self.copy_order not in (1, 2):
            raise ChatbotError(f"model setting copy_order must be 1 (match the token just read) or 2 "
                               f"(also the one before it), got {self.copy_order!r}.")
        if not self.embed_size:
            self.embed_size = self.hidden_size

    @property
    def tied(self) -> bool:
        return self.tie_weights and self.embed_size == self.hidden_size

    def num_parameters(self) -> int:
        """Counted from the shapes alone, so a picker can show sizes without loading weights."""
        gates = len(GATES[self.cell])
        V, E, H = self.vocab_size, self.embed_size, self.hidden_size
        layers = sum(gates * H * ((E if i == 0 else H) + H) + 2 * gates * H
                     for i in range(self.num_layers))
        K = self.copy_key_size
        copy = 2 * (H * K + K) + (2 * V + 1) * K + K + 1 if self.copy_window else 0
        copy += 2 * (V + 1) * K if self.copy_window and self.copy_order == 2 else 0
        return V * E + layers + (0 if self.tied else V * H) + V + copy

    def weight_shapes(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """The saved tensors' names and shapes (LanguageModel.weights_for_saving), from the
        settings alone: a checkpoint's shapes can be checked before any memory is allocated.
        A generator, so a config claiming a million layers costs nothing until compared."""
        gates = {"lstm": 4, "gru": 3, "rnn": 1}[self.cell]
        V, E, H = self.vocab_size, self.embed_size, self.hidden_size
        yield "embed.weight", (V, E)
        for i in range(self.num_layers):
            yield f"rnn.weight_ih_l{i}", (gates * H, E if i == 0 else H)
            yield f"rnn.weight_hh_l{i}", (gates * H, H)
            yield f"rnn.bias_ih_l{i}", (gates * H,)
            yield f"rnn.bias_hh_l{i}", (gates * H,)
        if not self.tied:
            yield "head.weight", (V, H)
        yield "head.bias", (V,)
        if self.copy_window:
            K = self.copy_key_size
            for part in ("key", "query"):
                yield f"copy.{part}.weight", (K, H)
                yield f"copy.{part}.bias", (K,)
            yield "copy.key_token.weight", (V + 1, K)
            yield "copy.query_token.weight", (V, K)
            yield "copy.sentinel", (K,)
            yield "copy.sentinel_bias", (1,)
            if self.copy_order == 2:
                yield "copy.key_token2.weight", (V + 1, K)
                yield "copy.query_token2.weight", (V + 1, K)

    def check_weight_shapes(self, shapes: dict[str, tuple[int, ...]], source: str) -> None:
        """Refuse saved tensor shapes (from a safetensors header) that these settings do not
        imply, before a model is built: a tampered config.json (hidden_size 10^9) would
        otherwise allocate gigabytes, or fail in the allocator, before the mismatch showed."""
        hint = ("config.json and the weights come from different runs, or config.json was edited; "
                "copy the whole folder again or retrain.")
        count = (2 + 4 * self.num_layers + (0 if self.tied else 1)  # what weight_shapes yields
                 + ((8 + 2 * (self.copy_order == 2)) if self.copy_window else 0))
        for name, shape in self.weight_shapes():
            if name not in shapes:
                raise ChatbotError(f"{source}: the weights do not fit config.json (it implies "
                                   f"{count:,} tensors, the file has {len(shapes):,} and lacks "
                                   f"{name}): {hint}")
            if tuple(shapes[name]) != shape:
                raise ChatbotError(f"{source}: tensor {name} has shape {tuple(shapes[name])} but "
                                   f"config.json implies {shape}: {hint}")
        if len(shapes) != count:
            expected = {n for n, _ in self.weight_shapes()}
            raise ChatbotError(f"{source}: the weights do not fit config.json (unexpected "
                               f"{sorted(set(shapes) - expected)[:4]}): {hint}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ChatbotError(f"unknown model settings {sorted(unknown)} in config.json.")
        return cls(**data)


COPY_SETTINGS = ("copy_window", "copy_key_size", "copy_order")  # the copy head's ModelConfig settings


class LanguageModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed_size)
        self.drop = nn.Dropout(c.dropout)
        self.rnn = CELLS[c.cell](c.embed_size, c.hidden_size, c.num_layers, batch_first=True,
                                 dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.head = nn.Linear(c.hidden_size, c.vocab_size)
        if c.tied:
            self.head.weight = self.embed.weight  # Press & Wolf 2017: fewer parameters, better loss
        self.copy = CopyHead(c.hidden_size, c.copy_key_size, c.copy_window, c.vocab_size, c.copy_order) if c.copy_window else None
        self._init_weights()

    def _init_weights(self):
        nn.init.normal_(self.embed.weight, std=0.05)
        nn.init.zeros_(self.head.bias)
        if "forget" in GATES[self.config.cell]:
            # Forget-gate bias 1 (Jozefowicz et al. 2015): start by remembering.
            with torch.no_grad():
                for layer in range(self.config.num_layers):
                    self.gate_blocks(layer)["forget"].b_x.fill_(1.0)

    def gate_blocks(self, layer: int) -> dict[str, GateBlock]:
        """Layer `layer`'s weights, one block per gate, in the textbook's order. The blocks
        are views of the parameters (detached from autograd): they share their memory."""
        cell = self.config.cell
        parts = [getattr(self.rnn, f"{name}_l{layer}").detach().chunk(len(GATES[cell]))
                 for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        blocks = {gate: GateBlock(*(p[k] for p in parts)) for k, gate in enumerate(TORCH_ORDER[cell])}
        return {gate: blocks[gate] for gate in GATES[cell]}

    def initial_state(self, batch_size: int = 1) -> RecurrentState:
        c = self.config
        return RecurrentState.zeros(c.cell, c.num_layers, batch_size, c.hidden_size, self.embed.weight.device,
                                    c.copy_window, c.copy_key_size)

    def forward(self, ids: torch.Tensor, state: RecurrentState | None = None
                ) -> tuple[torch.Tensor, RecurrentState]:
        """ids (batch, time) -> logits (batch, time, vocab) and the state after the last step.
        With a copy head the "logits" are the mixture's log-probabilities (copy.py)."""
        if state is None:
            state = self.initial_state(ids.shape[0])
        x = self.drop(self.embed(ids))
        out, after = self.rnn(x, state.to_torch())
        logits = self.head(self.drop(out))
        new = RecurrentState.from_torch(self.config.cell, after)
        if self.copy is not None:
            logits, new.keys, new.values = self.copy(logits, out, state.h[-1], ids, state.keys, state.values)
        return logits, new

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def weights_for_saving(self) -> dict[str, torch.Tensor]:
        """The state dict without the tied head weight (safetensors stores no aliases)."""
        sd = self.state_dict()
        if self.config.tied:
            sd.pop("head.weight")
        return {k: v.detach().contiguous().cpu() for k, v in sd.items()}

    def load_saved_weights(self, weights: dict[str, torch.Tensor], source: str) -> None:
        expected = {k: v.shape for k, v in self.weights_for_saving().items()}
        missing = sorted(set(expected) - set(weights))
        extra = sorted(set(weights) - set(expected))
        if missing or extra:
            raise ChatbotError(f"{source}: the weights do not fit config.json "
                               f"(missing {missing[:4]}, unexpected {extra[:4]}).")
        for name, shape in expected.items():
            if tuple(weights[name].shape) != tuple(shape):
                raise ChatbotError(f"{source}: tensor {name} has shape {tuple(weights[name].shape)} "
                                   f"but config.json implies {tuple(shape)}.")
            if not weights[name].is_floating_point():
                raise ChatbotError(f"{source}: tensor {name} is not floating point.")
            if not torch.isfinite(weights[name]).all():
                bad = int((~torch.isfinite(weights[name])).sum())
                raise ChatbotError(f"{source}: tensor {name} holds {bad:,} non-finite values (NaN or "
                                   f"infinity), so the model cannot produce probabilities. The "
                                   f"file is damaged or the run diverged; retrain or copy it again.")
        self.load_state_dict(weights, strict=False)
