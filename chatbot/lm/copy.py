"""The copy head: a pointer-sentinel mixture (Merity et al. 2017) over a bounded window of
recent positions (the last `copy_window`), in the manner of Grave et al.'s continuous cache (2017), trained with the
model.

An LSTM must squeeze a name it was told into its state and spell it out again later, which a
plain language-model objective teaches late if at all (README, "The default model"). The copy
head lets the next token be one read earlier instead. Every position j keeps a key: the top
layer's output *before* token j was read (what the model expected there), projected to
`copy_key_size` numbers, with token j as its value. At step t the output o_t is projected to
a query; the query scores every key in the window and a learned sentinel vector s:

    a = softmax([q_t·k_1, ..., q_t·k_W, q_t·s] / sqrt(key_size) + [0, ..., 0, b])
    p(x_{t+1}) = a_sentinel * softmax(logits_t) + sum over slots j with token x_j = x_{t+1} of a_j

so "My name is" later matches "My name is" earlier, and the token that followed it is copied;
after that token, the next piece of the name follows the same way. The sentinel's share is the
model's own distribution: where nothing in the window fits, the reply is the LSTM's.

With copy_order 2 the key also carries the token two before its slot, and the query the token
before the one just read: "name is" then matches "name is" and not every other "is", and "▁L"
after "is" matches only the "▁L" that came after "is". A name split into many one-letter pieces
is then followed piece by piece without the match being shared among look-alikes.

The window (keys and tokens of the last `copy_window` positions) is part of the recurrent
state (state.py): the conversation's memory is still one fixed-size state, and a turn still
feeds only the new message at a cost that does not grow with the conversation.

The head returns log-probabilities where a plain model returns logits. Both are "logits" to
everything downstream (softmax(log p) = p; temperature and the filters act on them alike).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class CopyHead(nn.Module):
    def __init__(self, hidden_size: int, key_size: int, window: int, vocab_size: int, order: int = 1):
        super().__init__()
        self.key_size = key_size
        self.key = nn.Linear(hidden_size, key_size)
        self.query = nn.Linear(hidden_size, key_size)
        # The token just read, added to the query, and the token before a slot's token, added to
        # its key: "the earlier place that came after this same token" is then one dot product
        # (an induction step), which spells out a copied word piece by piece.
        self.key_token = nn.Embedding(vocab_size + 1, key_size)  # row vocab_size: no token (chat start)
        self.query_token = nn.Embedding(vocab_size, key_size)
        with torch.no_grad():  # start alike: a token's query matches its own keys (q·k ≈ key_size)
            self.query_token.weight.copy_(self.key_token.weight[:vocab_size])
        self.key_token2 = self.query_token2 = None
        if order == 2:  # the token two before a slot, and the one before the token just read
            # (row vocab_size: none). Smaller at first, so a head trained without them still
            # copies as before while these learn how much the longer match should count.
            self.key_token2 = nn.Embedding(vocab_size + 1, key_size)
            self.query_token2 = nn.Embedding(vocab_size + 1, key_size)
            with torch.no_grad():
                self.key_token2.weight.mul_(0.5)
                self.query_token2.weight.copy_(self.key_token2.weight)
        self.sentinel = nn.Parameter(torch.zeros(key_size))
        # Added to the sentinel's score: it starts at log(window) + 3, so a new head leaves
        # about 95% to the model (not 1 / (window + 1)) until it has learned where to copy.
        self.sentinel_bias = nn.Parameter(torch.tensor([math.log(window) + 3.0]))

    def forward(self, logits: torch.Tensor, out: torch.Tensor, before: torch.Tensor, ids: torch.Tensor,
                keys: torch.Tensor, values: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """logits (B, T, V) and top-layer outputs out (B, T, H) after reading ids (B, T);
        `before` (B, H) is the top output before ids[:, 0]; keys (W, B, K) and values (W, B) the
        window so far. Returns log p (B, T, V) and the window after ids."""
        B, T = ids.shape
        W = keys.shape[0]
        none = self.key_token.num_embeddings - 1
        # ids with the two tokens before them (-1 where there are none yet), then as embedding rows
        seq = torch.cat([values.new_full((B, 2), -1), values.T, ids], 1)[:, -(T + 2):]
        seq = seq.masked_fill(seq < 0, none)
        previous = seq[:, 1:-1]  # the token before each of ids
        new_keys = (self.key(torch.cat([before[:, None].to(out.dtype), out[:, :-1]], 1)).float()
                    + self.key_token(previous).float())
        query = self.query(out).float() + self.query_token(ids).float()
        if self.key_token2 is not None:
            new_keys = new_keys + self.key_token2(seq[:, :-2]).float()
            query = query + self.query_token2(previous).float()
        all_keys = torch.cat([keys.transpose(0, 1), new_keys], 1)  # (B, W + T, K)
        all_values, visible = window_slots(values, ids)
        scores = query @ all_keys.transpose(1, 2)  # (B, T, W + T)
        scores = scores.masked_fill(~visible, float("-inf"))
        sentinel = (query @ self.sentinel.float())[..., None]  # (B, T, 1)
        scores = torch.cat([scores, sentinel], 2) / math.sqrt(self.key_size)
        scores[..., -1] += self.sentinel_bias.float()
        a = torch.softmax(scores, 2)
        p = a[..., -1:] * torch.softmax(logits.float(), 2)
        index = all_values.clamp_min(0)[:, None, :].expand(B, T, W + T)
        p = p.scatter_add(2, index, a[..., :-1])  # empty slots have weight 0
        log_p = p.clamp_min(torch.finfo(torch.float32).tiny).log()
        return log_p, all_keys[:, -W:].transpose(0, 1), all_values[:, -W:].T


def window_slots(values: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens in reach of each step: values (W, B) is the window before ids (B, T).
    Returns all_values (B, W + T), the window followed by ids, and visible (B, T, W + T).

    Step t sees the last W positions up to and including its own token, filled ones only: slot
    i is position i - W, so those with t < i <= t + W. Fed in one call or in pieces, every step
    sees the same slots."""
    W, T = values.shape[0], ids.shape[1]
    all_values = torch.cat([values.T, ids], 1)
    i, t = torch.arange(W + T, device=ids.device), torch.arange(T, device=ids.device)[:, None]
    visible = (i > t) & (i <= t + W) & (all_values >= 0)[:, None, :]
    return all_values, visible


def copyable(values: torch.Tensor, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: the token to predict after step t, targets[:, t], follows the token just read,
    ids[:, t], somewhere in step t's window (window_slots): the head's induction step ("the
    place that came after this same token") could copy it. Spelling out a name told earlier is
    a run of such targets. Used to weigh the training loss (train/device.py)."""
    all_values, visible = window_slots(values, ids)
    before = torch.cat([torch.full_like(all_values[:, :1], -1), all_values[:, :-1]], 1)  # the token before each slot
    follows = (all_values[:, None, :] == targets[:, :, None]) & (before[:, None, :] == ids[:, :, None])
    return (follows & visible).any(2)
