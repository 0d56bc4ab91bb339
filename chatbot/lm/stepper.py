"""Fast batch-1 generation: one token in, next-token logits out, with no nn.LSTM call.

Generating a reply calls the model once per token, where nn.LSTM's per-call work
(argument checks, weight flattening, packing the state into 3-D tensors) costs more than
the arithmetic. The Stepper reads the same weights once and then does only the matrix-vector
products. Layer 0's input projection plus its biases is folded into a (vocab x gates) table,
so the first layer's input work is a row lookup. The rows of each gate matrix are reordered
so all sigmoid gates are contiguous. The numbers equal the full-sequence forward (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import LanguageModel, State


@dataclass
class RecurrentState:
    """The conversation's memory: one hidden (and, for an LSTM, cell) vector per layer."""

    h: list[torch.Tensor]
    c: list[torch.Tensor] | None = None

    @classmethod
    def from_model(cls, state: State) -> "RecurrentState":
        h = [t.clone() for t in state[0][:, 0]]
        c = [t.clone() for t in state[1][:, 0]] if len(state) == 2 else None
        return cls(h, c)

    def to_model(self) -> State:
        h = torch.stack(self.h)[:, None, :]
        return (h, torch.stack(self.c)[:, None, :]) if self.c is not None else (h,)

    def clone(self) -> "RecurrentState":
        return RecurrentState([t.clone() for t in self.h],
                              [t.clone() for t in self.c] if self.c is not None else None)

    def equals(self, other: "RecurrentState", atol: float = 0.0, rtol: float = 0.0) -> bool:
        """Same vectors within tolerance. Cell states can grow large, so compare them
        with a relative tolerance as well as an absolute one."""
        mine, theirs = self.h + (self.c or []), other.h + (other.c or [])
        return len(mine) == len(theirs) and all(
            torch.allclose(a, b, atol=atol, rtol=rtol) for a, b in zip(mine, theirs))


class Stepper:
    """Advances a RecurrentState by one token. Build it after training: it copies the weights."""

    def __init__(self, model: LanguageModel):
        cfg = model.config
        self.cell = cfg.cell
        self.hidden = H = cfg.hidden_size
        with torch.no_grad():
            rnn = model.rnn
            if cfg.cell == "lstm":  # torch order i, f, g, o -> ours i, f, o, g
                order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H),
                                   torch.arange(2 * H, 3 * H)])
            else:
                order = None

            def weights(layer: int):
                w_ih = getattr(rnn, f"weight_ih_l{layer}").detach()
                w_hh = getattr(rnn, f"weight_hh_l{layer}").detach()
                b_ih = getattr(rnn, f"bias_ih_l{layer}").detach()
                b_hh = getattr(rnn, f"bias_hh_l{layer}").detach()
                if order is not None:
                    w_ih, w_hh, b_ih, b_hh = w_ih[order], w_hh[order], b_ih[order], b_hh[order]
                return w_ih, w_hh, b_ih, b_hh

            self.layers = []
            for layer in range(cfg.num_layers):
                w_ih, w_hh, b_ih, b_hh = weights(layer)
                if self.cell == "gru":
                    # The GRU's candidate needs W_hn h + b_hn apart from the input side.
                    self.layers.append((w_ih.clone(), w_hh.clone(), b_ih.clone(), b_hh.clone()))
                elif layer > 0:
                    # Upper layers read [x, h] with one matrix: one product instead of two.
                    self.layers.append((torch.cat([w_ih, w_hh], dim=1).contiguous(), None,
                                        (b_ih + b_hh).clone(), None))
                else:
                    self.layers.append((w_ih.clone(), w_hh.clone(), (b_ih + b_hh).clone(), None))
            w_ih0, _, b0, _ = self.layers[0]
            # Row t of the table is layer 0's input contribution for token t.
            self.table0 = (model.embed.weight.detach() @ w_ih0.T + b0).contiguous()
            self.head_w = model.head.weight.detach().clone()
            self.head_b = model.head.bias.detach().clone()

    def step(self, token: int, state: RecurrentState) -> torch.Tensor:
        """Feed one token; update `state` in place; return the next-token logits (vocab,).

        No autograd context is entered (that costs ~10% per token): the copied weights do
        not require gradients, so nothing here is recorded."""
        x = None
        for layer, (w_ih, w_hh, b, b_hh) in enumerate(self.layers):
            h = state.h[layer]
            if self.cell == "lstm":
                gates = (torch.addmv(self.table0[token], w_hh, h) if layer == 0
                         else torch.addmv(b, w_ih, torch.cat([x, h])))
                sig = gates[: 3 * self.hidden].sigmoid()
                i, f, o = sig.chunk(3)
                g = gates[3 * self.hidden:].tanh()
                c = torch.addcmul(i * g, f, state.c[layer])
                h = o * c.tanh()
                state.c[layer] = c
            elif self.cell == "gru":
                gi = self.table0[token] if layer == 0 else torch.addmv(b, w_ih, x)
                gh = torch.addmv(b_hh, w_hh, h)
                r, z = (gi[: 2 * self.hidden] + gh[: 2 * self.hidden]).sigmoid().chunk(2)
                n = torch.addcmul(gi[2 * self.hidden:], r, gh[2 * self.hidden:]).tanh()
                h = torch.addcmul(n, z, h - n)
            else:
                pre = (torch.addmv(self.table0[token], w_hh, h) if layer == 0
                       else torch.addmv(b, w_ih, torch.cat([x, h])))
                h = pre.tanh()
            state.h[layer] = h
            x = h
        return torch.addmv(self.head_b, self.head_w, x)
