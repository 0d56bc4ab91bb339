"""The recurrent cells written out gate by gate, to look inside a trained model.

torch's nn.LSTM computes all of this in one fused call; here each line is one equation, run
with the model's own weights, so a reader can match the code to the textbook and the
Inspect page can show every gate. For an LSTM layer, with [h_{t-1}, x_t] the previous hidden
state stacked on the input:

    f_t = σ(W_f·[h_{t-1}, x_t] + b_f)        forget gate: how much of each cell to keep
    i_t = σ(W_i·[h_{t-1}, x_t] + b_i)        input gate: how much of the candidate to write
    C̃_t = tanh(W_C·[h_{t-1}, x_t] + b_C)     candidate values
    C_t = f_t * C_{t-1} + i_t * C̃_t          the cell state: the long-term memory
    o_t = σ(W_o·[h_{t-1}, x_t] + b_o)        output gate: how much of the cell to show
    h_t = o_t * tanh(C_t)                    the hidden state: what the next layer sees

GRU (torch's formulation) and the plain tanh RNN are written the same way. Tests check that
every layer reproduces torch's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .model import GateBlock, LanguageModel
from .state import RecurrentState


@dataclass
class LayerTrace:
    """Per-step values of one layer, each a (steps, hidden) tensor."""

    h: torch.Tensor
    gates: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (steps, hidden)


@dataclass
class Trace:
    cell: str
    layers: list[LayerTrace]
    logits: torch.Tensor  # (steps, vocab): what the LSTM head predicts after each token (no copy head)
    final_state: RecurrentState

    @property
    def gate_names(self) -> list[str]:
        return list(self.layers[0].gates)


def sigmoid(v: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(v)


def lstm_layer(xs: torch.Tensor, h: torch.Tensor, c: torch.Tensor, gates: dict[str, GateBlock]):
    """One LSTM layer over xs (steps, input) from (h, c); returns (LayerTrace, h, c)."""
    W_f, W_i, W_C, W_o = (g.W for g in gates.values())  # forget, input, candidate, output
    b_f, b_i, b_C, b_o = (g.b for g in gates.values())
    out = {name: [] for name in ("forget", "input", "candidate", "output", "cell")}
    hs = []
    for x in xs:
        hx = torch.cat([h, x])  # [h_{t-1}, x_t]
        f = sigmoid(W_f @ hx + b_f)
        i = sigmoid(W_i @ hx + b_i)
        C_tilde = torch.tanh(W_C @ hx + b_C)
        c = f * c + i * C_tilde
        o = sigmoid(W_o @ hx + b_o)
        h = o * torch.tanh(c)
        for name, value in (("forget", f), ("input", i), ("candidate", C_tilde), ("output", o), ("cell", c)):
            out[name].append(value)
        hs.append(h)
    return LayerTrace(torch.stack(hs), {k: torch.stack(v) for k, v in out.items()}), h, c


def gru_layer(xs: torch.Tensor, h: torch.Tensor, gates: dict[str, GateBlock]):
    """One GRU layer, torch's formulation:
        r_t = σ(W_r·[h_{t-1}, x_t] + b_r)                  reset gate
        z_t = σ(W_z·[h_{t-1}, x_t] + b_z)                  update gate: how much of h_{t-1} to keep
        n_t = tanh(W_xn x_t + b_xn + r_t * (W_hn h_{t-1} + b_hn))   candidate
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    """
    reset, update, cand = gates.values()
    W_r, W_z, b_r, b_z = reset.W, update.W, reset.b, update.b
    out = {name: [] for name in ("reset", "update", "candidate")}
    hs = []
    for x in xs:
        hx = torch.cat([h, x])
        r = sigmoid(W_r @ hx + b_r)
        z = sigmoid(W_z @ hx + b_z)
        n = torch.tanh(cand.w_x @ x + cand.b_x + r * (cand.w_h @ h + cand.b_h))
        h = (1 - z) * n + z * h
        for name, value in (("reset", r), ("update", z), ("candidate", n)):
            out[name].append(value)
        hs.append(h)
    return LayerTrace(torch.stack(hs), {k: torch.stack(v) for k, v in out.items()}), h


def rnn_layer(xs: torch.Tensor, h: torch.Tensor, gates: dict[str, GateBlock]):
    """One plain RNN layer: h_t = tanh(W·[h_{t-1}, x_t] + b). No gates: nothing protects
    old information from being rewritten at every step."""
    W, b = gates["hidden"].W, gates["hidden"].b
    hs = []
    for x in xs:
        h = torch.tanh(W @ torch.cat([h, x]) + b)
        hs.append(h)
    return LayerTrace(torch.stack(hs)), h


@torch.no_grad()
def trace(model: LanguageModel, ids: list[int], state: RecurrentState | None = None) -> Trace:
    """Run `ids` (one sequence) through the model step by step with the explicit cells,
    from `state` (batch 1) or zeros; record every gate of every layer."""
    cfg = model.config
    state = state if state is not None else model.initial_state(1)
    xs = model.embed.weight.detach()[torch.tensor(ids, dtype=torch.long)].to(torch.float32)
    run_layer = {"lstm": lstm_layer, "gru": gru_layer, "rnn": rnn_layer}[cfg.cell]
    layers, finals = [], []
    for layer in range(cfg.num_layers):
        start = [t[layer, 0].float() for t in state.tensors()]  # h, and c for an LSTM
        record, *final = run_layer(xs, *start, model.gate_blocks(layer))
        layers.append(record)
        finals.append(final)
        xs = record.h  # the next layer reads this layer's hidden states (no dropout: eval)
    after = tuple(torch.stack(vectors)[:, None, :] for vectors in zip(*finals))
    return Trace(cfg.cell, layers, model.head(xs), RecurrentState.from_tensors(cfg.cell, after))


def memory_kept(tr: Trace) -> float | None:
    """How much of its memory the model kept per step, averaged over steps, units and layers:
    the mean forget gate f_t for an LSTM, the mean update gate z_t (the share of h_{t-1}
    kept) for a GRU; None for a plain RNN, which has no such gate.

    It is one average over every unit, and units differ widely: in a trained model many keep
    nearly everything (f above 0.95) while others forget within a few steps, so a picture of a
    few chosen units can look quite unlike it. The Inspect page shows the spread per unit
    beside this number."""
    name = {"lstm": "forget", "gru": "update"}.get(tr.cell)
    if name is None or len(tr.layers[0].h) == 0:
        return None
    return float(torch.stack([layer.gates[name].mean() for layer in tr.layers]).mean())


def half_life(kept: float) -> float:
    """Steps until a memory kept at this rate per step is halved: kept ** n = 1/2. A forget
    gate of 0.99 still halves the cell's old content in about 69 steps; 0.5 in one."""
    if kept >= 1:
        return float("inf")
    if kept <= 0:
        return 0.0
    return float(np.log(0.5) / np.log(kept))
