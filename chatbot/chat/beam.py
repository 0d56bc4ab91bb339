"""Beam search over carried LSTM states, with optional anti-generic "relevance" reranking.

Beams are rows of one batch: every step advances all of them with a single forward call.
A hypothesis is scored by its log-probability under the conversation's state; with relevance
R > 0, minus R times its log-probability from a fresh state that never saw the conversation
(the maximum-mutual-information idea: a reply that is likely whatever was said, such as "I
don't know", loses points). Those fresh-state rows run in the same batch. Finished replies
(the model closed its turn) are ranked by their score per token.

Widths are nested: a search of width W also runs the searches of width 1 … W-1 in the same
batch and returns the best reply any of them found. Plain beam search is not monotone in the
width; nested, a wider beam never returns a lower-scoring reply than a narrower one, and
width 1 is greedy decoding.

While the search runs, only text that every hypothesis still in the running shares is
streamed, so what appears never has to be taken back.

The work per reply is bounded: at most MAX_BEAM_WORK rows are advanced in all (a width-W
search advances W(W+1)/2 rows per token, twice that with relevance), so a wide search stops
after fewer tokens (width 16 with relevance: 147) and returns the best reply found so far,
unfinished; continuing the reply searches on from there. A `progress` callback is called after
every token searched, which lets a front end show the search working and interrupt it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..lm.model import LanguageModel
from ..lm.state import RecurrentState
from ..text.tokenizers import Tokenizer
from .sampling import Reply, SamplingConfig


MAX_BEAM_WORK = 40_000  # rows advanced per reply, relevance twins included


def beam_rows(cfg: SamplingConfig, relevance: bool) -> int:
    """Rows one step of the search advances: every nested width's hypotheses (and twins)."""
    return cfg.beam_width * (cfg.beam_width + 1) // 2 * (2 if relevance else 1)


def beam_steps(cfg: SamplingConfig, relevance: bool) -> int:
    """The most tokens one reply's search may take: max_new_tokens, or fewer for the work bound."""
    return max(1, min(cfg.max_new_tokens, MAX_BEAM_WORK // beam_rows(cfg, relevance)))


@dataclass
class Hypothesis:
    ids: list[int]
    score: float  # sum of log p(token | conversation) - R * log p(token | fresh state)
    row: int  # its row in the batch of states
    width: int  # the beam (of the nested widths) it belongs to

    def normalized(self) -> float:
        return self.score / max(1, len(self.ids))


def _common_prefix(seqs: list[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != seqs[0][i] for s in seqs):
            return i
    return n


@torch.inference_mode()
def beam_reply(model: LanguageModel, tokenizer: Tokenizer, state: RecurrentState,
               logits: torch.Tensor, cfg: SamplingConfig, reply: Reply,
               fresh_logits: torch.Tensor | None = None,
               fresh_state: RecurrentState | None = None,
               progress: Callable[[int, int], None] | None = None) -> Iterator[str]:
    """Search a reply from `state` (whose next-token logits are `logits`); fill `reply`, and
    `reply.state` with the state after the reply's tokens. Yields text as soon as every
    hypothesis that could still be chosen agrees on it. With cfg.relevance > 0,
    `fresh_logits`/`fresh_state` are the context-free start (a new chat, after the bot marker).

    At most beam_steps(cfg, ...) tokens are searched (the work bound); `progress(done, most)`
    is called after each. If the caller stops early, or `progress` raises (an interrupt), the
    reply is the agreed text so far and its state follows it."""
    relevance = cfg.relevance if fresh_logits is not None else 0.0
    end = tokenizer.end_id
    first = torch.zeros(1, dtype=torch.long)
    widths = range(1, cfg.beam_width + 1)
    live = [Hypothesis([], 0.0, 0, w) for w in widths]  # all start on row 0
    states = state.rows(first)
    step_logp = logits.float().log_softmax(-1)[None]
    if relevance:
        fresh_states = fresh_state.rows(first)
        step_fresh = fresh_logits.float().log_softmax(-1)[None]
    finished: list[tuple[Hypothesis, RecurrentState]] = []
    decoder = tokenizer.stream_decoder()
    already = len(reply.ids)  # a continued reply keeps its earlier tokens
    completed = False
    tail = ""

    def emit(tokens: list[int]) -> Iterator[str]:
        for token in tokens:
            reply.ids.append(token)
            piece = decoder.push(token)
            if piece:
                reply.text += piece
                yield piece

    steps = beam_steps(cfg, bool(relevance))
    try:
        for step in range(steps):
            # Expand the live hypotheses of each nested width w; keep its best w extensions.
            gain = step_logp - relevance * step_fresh if relevance else step_logp
            chosen: list[Hypothesis] = []
            for w in widths:
                mine = [h for h in live if h.width == w]
                if mine:
                    scores = torch.stack([gain[h.row] + h.score for h in mine])
                    top = scores.flatten().topk(min(w, scores.numel()))
                    vocab = scores.shape[1]
                    for value, flat in zip(top.values.tolist(), top.indices.tolist()):
                        parent = mine[flat // vocab]
                        chosen.append(Hypothesis(parent.ids + [flat % vocab], value, parent.row, w))
            # One forward advances all of them and, for relevance, their fresh-state twins
            # (stacked under them in the same batch).
            parents = torch.tensor([h.row for h in chosen])
            tokens = torch.tensor([[h.ids[-1]] for h in chosen])
            n = len(chosen)
            batch_state = states.rows(parents)
            if relevance:
                batch_state = RecurrentState.stack_rows([batch_state, fresh_states.rows(parents)])
                tokens = torch.cat([tokens, tokens])
            out, after = model(tokens, batch_state)
            logp = out[:, -1].float().log_softmax(-1)
            step_logp, states = logp[:n], after.rows(slice(None, n))
            if relevance:
                step_fresh, fresh_states = logp[n:], after.rows(slice(n, None))
            live = []
            for row, h in enumerate(chosen):
                h.row = row
                if h.ids[-1] == end:
                    finished.append((h, states.rows([row])))
                else:
                    live.append(h)
            full = {w for w in widths if sum(f.width == w for f, _ in finished) >= w}
            live = [h for h in live if h.width not in full]
            if not live:
                break
            if progress is not None:
                progress(step + 1, steps)
            # Stream what every hypothesis that could still be chosen agrees on.
            agreed = _common_prefix([h.ids for h in live] + [f.ids for f, _ in finished])
            yield from emit(live[0].ids[len(reply.ids) - already:agreed])
        # Best by score per token among everything found (live ones only at the token limit).
        pool = finished + [(h, states.rows([h.row])) for h in live]
        best, best_state = max(pool, key=lambda pair: pair[0].normalized())
        yield from emit(best.ids[len(reply.ids) - already:])
        reply.ended = best.ids[-1] == end
        reply.next_logits = None if reply.ended else step_logp[best.row]
        reply.state = best_state
        completed = True
    finally:
        tail = decoder.flush()
        reply.text += tail
        if not completed:  # stopped early: the reply is the agreed prefix; follow it
            new = reply.ids[already:]
            reply.state = state
            if new:
                out, reply.state = model(torch.tensor([new]), state)
                reply.next_logits = out[0, -1]
    if tail:
        yield tail


def score_reply(model: LanguageModel, state: RecurrentState, logits: torch.Tensor, ids: list[int],
                relevance: float = 0.0, fresh_state: RecurrentState | None = None,
                fresh_logits: torch.Tensor | None = None) -> float:
    """The beam score per token of a given reply (for tests and comparisons)."""
    def logp(start_state: RecurrentState, first: torch.Tensor) -> float:
        with torch.inference_mode():
            total = float(first.float().log_softmax(-1)[ids[0]])
            if len(ids) > 1:
                out, _ = model(torch.tensor([ids[:-1]]), start_state)
                lp = out[0].float().log_softmax(-1)
                total += float(lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())
            return total
    score = logp(state, logits)
    if relevance:
        score -= relevance * logp(fresh_state, fresh_logits)
    return score / max(1, len(ids))

