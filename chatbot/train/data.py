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
import mmap
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ChatbotError
from ..lm.model import LanguageModel
from ..text.tokenizers import Tokenizer


@dataclass
class Split:
    train: torch.Tensor | np.ndarray  # 1-D ids: a long tensor, or the token cache's memmap
    val: torch.Tensor  # 1-D long: the last val_fraction of the text, in order
    val_chars: int  # characters the scored validation targets spell
    train_starts: list[int] = field(default_factory=lambda: [0])  # document starts in `train`
    val_starts: list[int] = field(default_factory=list)  # document starts in `val`


MAX_VAL_TOKENS = 2_000_000  # a validation pass over more would take longer than it tells


def split_ids(ids, val_fraction: float, tokenizer: Tokenizer, seq_len: int, doc_starts=None) -> Split:
    """The last val_fraction of the ids (at most MAX_VAL_TOKENS) validates; the rest trains.
    `ids` may be a list or a numpy memmap; the training part of a memmap stays one (a view)."""
    if not 0 < val_fraction < 0.5:
        raise ChatbotError(f"--val-fraction must be between 0 and 0.5, got {val_fraction}.")
    ids = np.asarray(ids)
    n_val = max(2, min(int(len(ids) * val_fraction), MAX_VAL_TOKENS))
    train, val = ids[:-n_val], ids[-n_val:]
    if len(train) < seq_len + 1:
        raise ChatbotError(
            f"the corpus is too short: {len(ids):,} tokens, of which {len(train):,} train, but one "
            f"training sequence needs {seq_len + 1} (--seq-len {seq_len}). Add more text or use a "
            f"smaller --seq-len.")
    val = torch.from_numpy(val.astype(np.int64))
    starts = np.asarray([0] if doc_starts is None else doc_starts, dtype=np.int64)
    # (Streams adds the start at 0 itself, so train_starts may be empty.)
    return Split(train, val, tokenizer.char_length(val[1:].tolist()), starts[starts < len(train)],
                 (starts[starts >= len(train)] - len(train)).tolist())


class Streams:
    """`batch_size` parallel contiguous streams over the training ids.

    With many short documents (see module docstring) the documents are put in a new order
    each epoch, drawn from (seed, epoch), and stream i starts at the first document boundary
    at or after i/batch_size of the text. Otherwise the streams are fixed slices of the text.

    `ids` may be a numpy memmap of a corpus larger than memory (chatbot/text/token_cache.py): each
    step reads just its batch_size x (seq_len + 1) ids, and every RELEASE_EVERY steps the
    pages already read are handed back, so over a long run the process's resident memory does
    not grow to the size of the file. Reshuffling copies the text once per epoch, so it is
    done for corpora up to SHUFFLE_MAX_TOKENS only.
    """

    SHUFFLE_MAX_TOKENS = 2**25
    RELEASE_EVERY = 1024

    def __init__(self, ids, batch_size: int, seq_len: int, doc_starts=None, seed: int = 0):
        ids = ids.numpy() if isinstance(ids, torch.Tensor) else ids
        batch_size = max(1, min(batch_size, (len(ids) - 1) // seq_len))
        self.ids, self.batch_size, self.seq_len, self.seed = ids, batch_size, seq_len, seed
        starts = np.union1d(np.asarray([] if doc_starts is None else doc_starts, dtype=np.int64), [0])
        lengths = np.diff(np.append(starts, len(ids)))
        self.starts, self.lengths = starts[lengths > 0], lengths[lengths > 0]
        longest = int(self.lengths.max())
        per_stream = (len(ids) - 1) // batch_size
        self.shuffled = (len(self.starts) >= 4 * batch_size and longest * 4 <= per_stream
                         and len(ids) <= self.SHUFFLE_MAX_TOKENS)
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
            order = torch.randperm(len(self.starts), generator=g).numpy()
            self.text = np.concatenate([self.ids[a:a + n] for a, n in zip(self.starts[order], self.lengths[order])])
            bounds = np.concatenate([[0], np.cumsum(self.lengths[order])[:-1]]).tolist()
            self.firsts = cut_points(len(self.text) - 1, self.batch_size, bounds)
            assert len(self.firsts) == self.batch_size  # starts are > `longest` apart (see __init__)
        else:
            self.text, self.firsts = self.ids, [b * self.n for b in range(self.batch_size)]
        self._epoch = epoch

    def window(self, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(inputs, targets, starts_epoch) for a step; the carried state resets at an epoch start."""
        epoch, w = divmod(step, self.windows)
        self._layout(epoch)
        if step % self.RELEASE_EVERY == 0:
            release_pages(self.text)
        a = w * self.seq_len
        rows = np.stack([self.text[f + a:f + a + self.seq_len + 1] for f in self.firsts]).astype(np.int64)
        rows = torch.from_numpy(rows)
        return rows[:, :-1], rows[:, 1:], w == 0


def release_pages(ids) -> None:
    """Unmap the pages of a memory-mapped id file this process has read. They stay in the
    OS's page cache, so reading them again costs no disk access, but they no longer count in
    this process's resident memory (RSS)."""
    mapping = getattr(ids, "_mmap", None)  # np.memmap's mmap object; None for in-memory arrays
    if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)


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
