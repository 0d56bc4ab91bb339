"""Laying a token stream out for truncated BPTT, and measuring validation loss per character.

The training text is cut into `batch_size` contiguous streams read side by side, one
`seq_len` window per step, so the state at the end of one window is the right state to
start the next window of the same stream (carried, detached). Which window a step reads is
a function of the step number alone, which is what makes --resume exact.

A corpus of many short documents (chat conversations) is reshuffled every epoch and each
stream starts at a document boundary: a stream starts from the zero state, and so does a
new chat, so the model learns to open a conversation from a fresh memory.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .errors import ChatbotError
from .model import LanguageModel
from .tokenizers import Tokenizer


@dataclass
class Split:
    train: torch.Tensor  # 1-D long
    val: torch.Tensor  # 1-D long: the last val_fraction of the text, in order
    val_chars: int  # characters the scored validation targets spell
    train_starts: list[int] = field(default_factory=lambda: [0])  # document starts in `train`
    val_starts: list[int] = field(default_factory=list)  # document starts in `val`


def split_ids(ids: list[int], val_fraction: float, tokenizer: Tokenizer, seq_len: int,
              doc_starts: list[int] | None = None) -> Split:
    if not 0 < val_fraction < 0.5:
        raise ChatbotError(f"--val-fraction must be between 0 and 0.5, got {val_fraction}.")
    n_val = max(2, int(len(ids) * val_fraction))
    train, val = ids[:-n_val], ids[-n_val:]
    if len(train) < seq_len + 1:
        raise ChatbotError(
            f"the corpus is too short: {len(ids):,} tokens, of which {len(train):,} train, but one "
            f"training sequence needs {seq_len + 1} (--seq-len {seq_len}). Add more text or use a "
            f"smaller --seq-len.")
    starts = doc_starts or [0]
    return Split(torch.tensor(train, dtype=torch.long), torch.tensor(val, dtype=torch.long),
                 tokenizer.char_length(val[1:]), [s for s in starts if s < len(train)] or [0],
                 [s - len(train) for s in starts if s >= len(train)])


class Streams:
    """`batch_size` parallel contiguous streams over the training ids.

    With many short documents (see module docstring) the documents are put in a new order
    each epoch, drawn from (seed, epoch), and stream i starts at the first document boundary
    at or after i/batch_size of the text. Otherwise the streams are fixed slices of the text.
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, seq_len: int,
                 doc_starts: list[int] | None = None, seed: int = 0):
        batch_size = max(1, min(batch_size, (len(ids) - 1) // seq_len))
        self.ids, self.batch_size, self.seq_len, self.seed = ids, batch_size, seq_len, seed
        starts = sorted(set(doc_starts or [0]) | {0})
        ends = starts[1:] + [len(ids)]
        self.docs = [(a, b) for a, b in zip(starts, ends) if b > a]
        longest = max(b - a for a, b in self.docs)
        per_stream = (len(ids) - 1) // batch_size
        self.shuffled = len(self.docs) >= 4 * batch_size and longest * 4 <= per_stream
        # Snapping a start forward moves it at most `longest` tokens, so this length never overlaps.
        n = per_stream - longest if self.shuffled else per_stream
        if n < seq_len:
            self.shuffled, n = False, per_stream
        self.n = n
        self.windows = n // seq_len  # windows per epoch
        self._epoch = None

    def _layout(self, epoch: int):
        if self._epoch == epoch:
            return
        if self.shuffled:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(len(self.docs), generator=g).tolist()
            text = torch.cat([self.ids[self.docs[i][0]:self.docs[i][1]] for i in order])
            bounds, pos = [], 0
            for i in order:
                bounds.append(pos)
                pos += self.docs[i][1] - self.docs[i][0]
            firsts = cut_points(len(text) - 1, self.batch_size, bounds)
            assert len(firsts) == self.batch_size  # starts are > `longest` apart (see __init__)
        else:
            text, firsts = self.ids, [b * self.n for b in range(self.batch_size)]
        self.inputs = torch.stack([text[f:f + self.n] for f in firsts])
        self.targets = torch.stack([text[f + 1:f + self.n + 1] for f in firsts])
        self._epoch = epoch

    def window(self, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(inputs, targets, starts_epoch) for a step; the carried state resets at an epoch start."""
        epoch, w = divmod(step, self.windows)
        self._layout(epoch)
        s = slice(w * self.seq_len, (w + 1) * self.seq_len)
        return self.inputs[:, s], self.targets[:, s], w == 0


def cut_points(length: int, pieces: int, boundaries: list[int]) -> list[int]:
    """Up to `pieces` start positions in [0, length): 0 and then each i/pieces of the way,
    moved forward to the next boundary (document start) when there is one."""
    cuts = {0}
    for i in range(1, pieces):
        target = i * length // pieces
        j = bisect.bisect_left(boundaries, target)
        cuts.add(boundaries[j] if j < len(boundaries) else target)
    return sorted(c for c in cuts if c < length)


@torch.no_grad()
def evaluate(model: LanguageModel, split: Split, seq_len: int, device: torch.device,
             max_streams: int = 16) -> dict:
    """Validation loss over the held-out text in order, state carried through each stream.

    Every target token is scored exactly once. For speed the text is cut into up to
    `max_streams` consecutive pieces run as one batch, each starting (from the zero state) at
    a document boundary where there is one, as training streams and new chats do. The loss
    is summed over tokens and divided by characters, so char and subword models compare.
    """
    was_training = model.training
    model.eval()
    val, targets = split.val[:-1], split.val[1:]
    pieces = max(1, min(max_streams, len(targets) // max(seq_len, 1)))
    cuts = cut_points(len(targets), pieces, split.val_starts) + [len(targets)]
    n = max(b - a for a, b in zip(cuts, cuts[1:]))
    x = torch.zeros(len(cuts) - 1, n, dtype=torch.long)
    y = torch.full((len(cuts) - 1, n), -100, dtype=torch.long)  # -100: padding, not scored
    for row, (a, b) in enumerate(zip(cuts, cuts[1:])):
        x[row, :b - a], y[row, :b - a] = val[a:b], targets[a:b]
    x, y = x.to(device), y.to(device)
    state = model.initial_state(x.shape[0])
    total = 0.0
    for start in range(0, n, seq_len):
        logits, state = model(x[:, start:start + seq_len], state)
        total += F.cross_entropy(logits.flatten(0, 1).float(), y[:, start:start + seq_len].flatten(),
                                 ignore_index=-100, reduction="sum").item()
    model.train(was_training)
    nats_per_char = total / max(1, split.val_chars)
    return {"val_loss_per_token": total / len(targets), "val_nats_per_char": nats_per_char,
            "val_bits_per_char": nats_per_char / math.log(2)}
