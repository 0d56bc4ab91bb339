"""Laying a token stream out for truncated BPTT, and measuring validation loss per character.

The training text is cut into `batch_size` contiguous streams read side by side, one
`seq_len` window per step, so the state at the end of one window is the right state to
start the next window of the same stream (carried, detached). Which window a step reads is
a function of the step number alone, which is what makes --resume exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import ChatbotError
from .model import LanguageModel, State
from .tokenizers import Tokenizer


@dataclass
class Split:
    train: torch.Tensor  # 1-D long
    val: torch.Tensor  # 1-D long: the last val_fraction of the text, in order
    val_chars: int  # characters the scored validation targets spell


def split_ids(ids: list[int], val_fraction: float, tokenizer: Tokenizer, seq_len: int) -> Split:
    if not 0 < val_fraction < 0.5:
        raise ChatbotError(f"--val-fraction must be between 0 and 0.5, got {val_fraction}.")
    n_val = max(2, int(len(ids) * val_fraction))
    train, val = ids[:-n_val], ids[-n_val:]
    if len(train) < seq_len + 1:
        raise ChatbotError(
            f"the corpus is too short: {len(ids):,} tokens, of which {len(train):,} train, but one "
            f"training sequence needs {seq_len + 1} (--seq-len {seq_len}). Add more text or use a "
            f"smaller --seq-len.")
    return Split(torch.tensor(train, dtype=torch.long), torch.tensor(val, dtype=torch.long),
                 tokenizer.char_length(val[1:]))


class Streams:
    """`batch_size` parallel contiguous streams over the training ids."""

    def __init__(self, ids: torch.Tensor, batch_size: int, seq_len: int):
        batch_size = max(1, min(batch_size, (len(ids) - 1) // seq_len))
        n = (len(ids) - 1) // batch_size
        self.batch_size, self.seq_len = batch_size, seq_len
        self.inputs = ids[: batch_size * n].view(batch_size, n)
        self.targets = ids[1: batch_size * n + 1].view(batch_size, n)
        self.windows = n // seq_len  # windows per epoch

    def window(self, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(inputs, targets, starts_epoch) for a step; the carried state resets at an epoch start."""
        w = step % self.windows
        s = slice(w * self.seq_len, (w + 1) * self.seq_len)
        return self.inputs[:, s], self.targets[:, s], w == 0


def detach(state: State) -> State:
    return tuple(t.detach() for t in state)


@torch.no_grad()
def evaluate(model: LanguageModel, split: Split, seq_len: int, device: torch.device,
             max_streams: int = 16) -> dict:
    """Validation loss over the held-out text in order, state carried through each stream.

    The text is cut into up to `max_streams` contiguous streams (run as one batch) for speed;
    the loss is summed over tokens and divided by characters, so char and subword models compare.
    """
    was_training = model.training
    model.eval()
    val = split.val
    streams = max(1, min(max_streams, (len(val) - 1) // max(seq_len, 1)))
    n = (len(val) - 1) // streams
    x = val[: streams * n].view(streams, n).to(device)
    y = val[1: streams * n + 1].view(streams, n).to(device)
    state = model.initial_state(streams)
    total = 0.0
    for start in range(0, n, seq_len):
        logits, state = model(x[:, start:start + seq_len], state)
        total += F.cross_entropy(logits.flatten(0, 1).float(), y[:, start:start + seq_len].flatten(),
                                 reduction="sum").item()
    model.train(was_training)
    scored = streams * n
    chars = max(1, round(split.val_chars * scored / (len(val) - 1)))
    nats_per_char = total / chars
    return {"val_loss_per_token": total / scored, "val_nats_per_char": nats_per_char,
            "val_bits_per_char": nats_per_char / math.log(2)}
