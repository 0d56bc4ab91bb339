"""Fast generation: one token in, next-token logits out, with no nn.LSTM call; for one
conversation (`step`) or for a batch of them, one token each (`step_rows`).

Generating a reply calls the model once per token, where nn.LSTM's per-call work
(argument checks, weight flattening, packing the state into 3-D tensors) costs more than
the arithmetic. The Stepper reads the same weights once (as gate blocks, in the textbook's
order) and then does only the matrix-vector products. Layer 0's input projection plus its
biases is folded into a (vocab x gates) table, so the first layer's input work is a row
lookup. The numbers equal the full-sequence forward (tested).

Both paths run the same gate arithmetic: `step` on vectors (matrix-vector products, the
fastest for one conversation), `step_rows` on (batch, ·) matrices (one matrix-matrix product
per layer for all rows, which reads each weight once for the whole batch: the generation
engine's step). A row's numbers do not depend on the other rows (tested within 1e-5).
"""

from __future__ import annotations

import copy

import torch

from .model import LanguageModel
from .state import RecurrentState


class Stepper:
    """Advances a RecurrentState by one token. Build it after training: it copies the weights."""

    def __init__(self, model: LanguageModel):
        cfg = model.config
        self.cell = cfg.cell
        self.hidden = cfg.hidden_size
        self._step_layer = {"lstm": self._lstm, "gru": self._gru, "rnn": self._rnn}[cfg.cell]
        self.layers = []
        with torch.no_grad():
            for layer in range(cfg.num_layers):
                blocks = list(model.gate_blocks(layer).values())
                w_x, w_h, b_x, b_h = (torch.cat([getattr(b, n) for b in blocks])
                                      for n in ("w_x", "w_h", "b_x", "b_h"))
                if cfg.cell == "gru":
                    # The GRU's candidate needs W_hn h + b_hn apart from the input side.
                    self.layers.append((w_x, w_h, b_x, b_h))
                elif layer > 0:
                    # Upper layers read [x, h] with one matrix: one product instead of two.
                    self.layers.append((torch.cat([w_x, w_h], dim=1).contiguous(), None, b_x + b_h, None))
                else:
                    self.layers.append((w_x, w_h, b_x + b_h, None))
            w_x0, _, b0, _ = self.layers[0]
            # Row t of the table is layer 0's input contribution for token t.
            self.table0 = (model.embed.weight.detach() @ w_x0.T + b0).contiguous()
            self.head_w = model.head.weight.detach().clone()
            self.head_b = model.head.bias.detach().clone()
        # The copy head (copy.py) mixes its pointer into the logits; a copy without gradients.
        self.copy = copy.deepcopy(model.copy).requires_grad_(False) if model.copy is not None else None

    def step(self, token: int, state: RecurrentState) -> tuple[torch.Tensor, RecurrentState]:
        """Feed one token to `state` (batch 1); return the next-token logits (vocab,) and the
        state after it. `state` itself is left as it was.

        No autograd context is entered (that costs ~10% per token): the copied weights do
        not require gradients, so nothing here is recorded."""
        c = state.c[:, 0] if state.c is not None else None
        logits, h, c = self._advance(token, state.h[:, 0], c)
        after = RecurrentState(self.cell, h[:, None], c[:, None] if c is not None else None)
        if self.copy is None:
            return logits, after
        logits, after = self._copy(logits[None], torch.tensor([token]), state, after)
        return logits[0], after

    def step_rows(self, tokens: torch.Tensor, state: RecurrentState) -> tuple[torch.Tensor, RecurrentState]:
        """Feed tokens[i] to row i of `state` (layers, batch, hidden), all rows at once; return
        the logits (batch, vocab) and the state after them (new tensors; `state` is left as
        it was)."""
        logits, h, c = self._advance(tokens, state.h, state.c)
        after = RecurrentState(self.cell, h, c)
        return (logits, after) if self.copy is None else self._copy(logits, tokens, state, after)

    def _copy(self, logits, tokens, state, after):
        """The copy head's mixture for one token per row: log-probabilities (batch, vocab),
        and `after` with the window moved on by that token."""
        log_p, after.keys, after.values = self.copy(logits[:, None], after.h[-1][:, None], state.h[-1],
                                                    tokens[:, None], state.keys, state.values)
        return log_p[:, 0], after

    def _advance(self, token, h_all, c_all):
        """The layers in order on vectors (h_all: (layers, hidden)) or on rows (h_all:
        (layers, batch, hidden), token a (batch,) tensor): logits, h and c after `token`."""
        x, hs, cs = None, [], []
        for layer, weights in enumerate(self.layers):
            c = c_all[layer] if c_all is not None else None
            h, c = self._step_layer(token, layer, x, h_all[layer], c, *weights)
            hs.append(h)
            cs.append(c)
            x = h
        return (_affine(self.head_b, self.head_w, x), torch.stack(hs),
                torch.stack(cs) if c_all is not None else None)

    def _preactivation(self, token, layer, x, h, w, w_h, b):
        """W·[x, h] + b: layer 0 adds W_h·h to its table row; upper layers use one matrix."""
        return _affine(self.table0[token], w_h, h) if layer == 0 else _affine(b, w, torch.cat([x, h], -1))

    def _lstm(self, token, layer, x, h, c, w, w_h, b, _):
        gates = self._preactivation(token, layer, x, h, w, w_h, b)  # f, i, C̃, o
        H = self.hidden
        f, i = gates[..., : 2 * H].sigmoid().chunk(2, -1)
        candidate = gates[..., 2 * H: 3 * H].tanh()
        o = gates[..., 3 * H:].sigmoid()
        c = torch.addcmul(i * candidate, f, c)
        return o * c.tanh(), c

    def _gru(self, token, layer, x, h, _, w_x, w_h, b_x, b_h):
        gi = self.table0[token] if layer == 0 else _affine(b_x, w_x, x)
        gh = _affine(b_h, w_h, h)
        H = self.hidden
        r, z = (gi[..., : 2 * H] + gh[..., : 2 * H]).sigmoid().chunk(2, -1)
        n = torch.addcmul(gi[..., 2 * H:], r, gh[..., 2 * H:]).tanh()
        return torch.addcmul(n, z, h - n), None

    def _rnn(self, token, layer, x, h, _, w, w_h, b, __):
        return self._preactivation(token, layer, x, h, w, w_h, b).tanh(), None


def _affine(b: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """b + W x for a vector x, or b + x Wᵀ for rows x (b: a vector, or one per row)."""
    return torch.addmv(b, w, x) if x.dim() == 1 else torch.addmm(b, x, w.T)
