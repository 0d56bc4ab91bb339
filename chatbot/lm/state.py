"""The recurrent state: the model's memory, and the one type every module passes around.

Per layer a hidden vector h and, for an LSTM, a cell vector c, for each of a batch of
sequences: tensors of shape (num_layers, batch, hidden_size), which is torch's layout.
A chat carries a batch of 1 from turn to turn; training carries one row per text stream.

A model with a copy head (copy.py) also carries its copy window: the keys of the last W
positions and the token read at each, (W, batch, key_size) and (W, batch), -1 marking a slot
not filled yet. The window has a fixed size, so a turn costs the same at turn 500 as at turn 1,
and it travels with h and c everywhere the state goes (snapshots, batches, saved chats).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

# How many state tensors each cell carries: an LSTM has a cell state besides its hidden state.
HAS_CELL_STATE = {"lstm": True, "gru": False, "rnn": False}
PARTS = ("h", "c", "keys", "values")  # every part has the batch on dim 1


@dataclass
class RecurrentState:
    cell: str  # lstm | gru | rnn
    h: torch.Tensor  # (num_layers, batch, hidden_size)
    c: torch.Tensor | None = None  # the LSTM's cell state (same shape); None for GRU and RNN
    keys: torch.Tensor | None = None  # the copy window's keys (W, batch, key_size), or None
    values: torch.Tensor | None = None  # the token of each key (W, batch), int64, -1: empty

    @classmethod
    def zeros(cls, cell: str, num_layers: int, batch: int, hidden: int,
              device: torch.device | str | None = None, window: int = 0,
              key_size: int = 0) -> "RecurrentState":
        zeros = lambda: torch.zeros(num_layers, batch, hidden, device=device)  # noqa: E731
        state = cls(cell, zeros(), zeros() if HAS_CELL_STATE[cell] else None)
        if window:
            state.keys = torch.zeros(window, batch, key_size, device=device)
            state.values = torch.full((window, batch), -1, dtype=torch.long, device=device)
        return state

    def parts(self) -> dict[str, torch.Tensor]:
        """The tensors this state has, by name (h; c for an LSTM; keys and values with a copy window)."""
        return {name: getattr(self, name) for name in PARTS if getattr(self, name) is not None}

    @classmethod
    def from_parts(cls, cell: str, parts: dict[str, torch.Tensor]) -> "RecurrentState":
        return cls(cell, **parts)

    @classmethod
    def from_tensors(cls, cell: str, tensors: tuple[torch.Tensor, ...]) -> "RecurrentState":
        """From (h,) or (h, c), as tensors() gives them."""
        return cls(cell, *tensors)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The recurrent layers' part: (h, c) for an LSTM, (h,) otherwise."""
        return (self.h,) if self.c is None else (self.h, self.c)

    # torch's nn.LSTM takes and returns the tuple (h, c); nn.GRU and nn.RNN a bare h.
    def to_torch(self):
        return (self.h, self.c) if self.c is not None else self.h

    @classmethod
    def from_torch(cls, cell: str, value) -> "RecurrentState":
        return cls(cell, *value) if HAS_CELL_STATE[cell] else cls(cell, value)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "RecurrentState":
        """A new state with `fn` applied to each tensor (to clone, detach, select rows, move)."""
        return RecurrentState.from_parts(self.cell, {k: fn(t) for k, t in self.parts().items()})

    def float(self) -> "RecurrentState":
        """Floating-point parts as float32 (after bf16 autocast); the window's tokens stay integers."""
        return self.map(lambda t: t.float() if t.is_floating_point() else t)

    def clone(self) -> "RecurrentState":
        return self.map(torch.Tensor.clone)

    def rows(self, index) -> "RecurrentState":
        """The state of some of the batch's sequences (an index tensor, a slice)."""
        return self.map(lambda t: t[:, index])

    @staticmethod
    def stack_rows(states: list["RecurrentState"]) -> "RecurrentState":
        """The batches of several states, one after the other."""
        names = states[0].parts().keys()
        return RecurrentState.from_parts(states[0].cell, {
            name: torch.cat([getattr(s, name) for s in states], dim=1) for name in names})

    @property
    def batch_size(self) -> int:
        return self.h.shape[1]

    def equals(self, other: "RecurrentState", atol: float = 0.0, rtol: float = 0.0) -> bool:
        """Same vectors within tolerance. Cell states can grow large, so compare them
        with a relative tolerance as well as an absolute one."""
        mine, theirs = self.parts(), other.parts()
        return (self.cell == other.cell and mine.keys() == theirs.keys() and all(
            a.shape == b.shape and (torch.allclose(a, b, atol=atol, rtol=rtol) if a.is_floating_point()
                                    else torch.equal(a, b))
            for a, b in ((mine[k], theirs[k]) for k in mine)))
