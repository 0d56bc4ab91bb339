"""The recurrent state: the model's memory, and the one type every module passes around.

Per layer a hidden vector h and, for an LSTM, a cell vector c, for each of a batch of
sequences: tensors of shape (num_layers, batch, hidden_size), which is torch's layout.
A chat carries a batch of 1 from turn to turn; training carries one row per text stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

# How many state tensors each cell carries: an LSTM has a cell state besides its hidden state.
HAS_CELL_STATE = {"lstm": True, "gru": False, "rnn": False}


@dataclass
class RecurrentState:
    cell: str  # lstm | gru | rnn
    h: torch.Tensor  # (num_layers, batch, hidden_size)
    c: torch.Tensor | None = None  # the LSTM's cell state (same shape); None for GRU and RNN

    @classmethod
    def zeros(cls, cell: str, num_layers: int, batch: int, hidden: int,
              device: torch.device | str | None = None) -> "RecurrentState":
        zeros = lambda: torch.zeros(num_layers, batch, hidden, device=device)  # noqa: E731
        return cls(cell, zeros(), zeros() if HAS_CELL_STATE[cell] else None)

    @classmethod
    def from_tensors(cls, cell: str, tensors: tuple[torch.Tensor, ...]) -> "RecurrentState":
        """From (h,) or (h, c), as tensors() gives them."""
        return cls(cell, *tensors)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """(h, c) for an LSTM, (h,) otherwise."""
        return (self.h,) if self.c is None else (self.h, self.c)

    # torch's nn.LSTM takes and returns the tuple (h, c); nn.GRU and nn.RNN a bare h.
    def to_torch(self):
        return (self.h, self.c) if self.c is not None else self.h

    @classmethod
    def from_torch(cls, cell: str, value) -> "RecurrentState":
        return cls(cell, *value) if HAS_CELL_STATE[cell] else cls(cell, value)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "RecurrentState":
        """A new state with `fn` applied to each tensor (to clone, detach, select rows, move)."""
        return RecurrentState.from_tensors(self.cell, tuple(fn(t) for t in self.tensors()))

    def clone(self) -> "RecurrentState":
        return self.map(torch.Tensor.clone)

    def rows(self, index) -> "RecurrentState":
        """The state of some of the batch's sequences (an index tensor, a slice)."""
        return self.map(lambda t: t[:, index])

    @staticmethod
    def stack_rows(states: list["RecurrentState"]) -> "RecurrentState":
        """The batches of several states, one after the other."""
        parts = zip(*(s.tensors() for s in states))
        return RecurrentState.from_tensors(states[0].cell, tuple(torch.cat(p, dim=1) for p in parts))

    @property
    def batch_size(self) -> int:
        return self.h.shape[1]

    def equals(self, other: "RecurrentState", atol: float = 0.0, rtol: float = 0.0) -> bool:
        """Same vectors within tolerance. Cell states can grow large, so compare them
        with a relative tolerance as well as an absolute one."""
        mine, theirs = self.tensors(), other.tensors()
        return (self.cell == other.cell and len(mine) == len(theirs) and all(
            a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=rtol) for a, b in zip(mine, theirs)))
