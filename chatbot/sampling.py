"""Choosing the next token, and the generator that streams a reply one piece at a time."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterator

import torch

from .errors import ChatbotError
from .stepper import RecurrentState, Stepper
from .tokenizers import Tokenizer

# The limits of every setting, checked here and used as the ranges of the app's sidebar and
# the CLI's help, so the three never disagree.
MAX_NEW_TOKENS_LIMIT = 20_000
MAX_BEAM_WIDTH = 16
MAX_TEMPERATURE = 10.0
MAX_REPETITION_PENALTY = 10.0
MAX_RELEVANCE = 2.0


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling controls, checked on creation so a bad value fails with a clear message."""

    temperature: float = 0.8  # 0 = greedy; higher = more random
    top_k: int = 0  # keep only the k likeliest tokens; 0 = off
    top_p: float = 1.0  # keep the smallest set whose probability reaches p; 1 = off
    repetition_penalty: float = 1.0  # >1 makes tokens already in the reply less likely; 1 = off
    min_p: float = 0.0  # drop tokens less likely than min_p x the likeliest one; 0 = off
    typical_p: float = 1.0  # keep the tokens closest to the expected surprise, up to this mass; 1 = off
    max_new_tokens: int = 300
    stop: tuple[str, ...] = ()  # stop right after any of these strings appears in the reply
    seed: int | None = None
    beam_width: int = 1  # >1: beam search instead of sampling (see chatbot/beam.py)
    relevance: float = 0.0  # >0: penalise replies likely without the conversation (beam search)

    def __post_init__(self):
        def bad(name: str, value, rule: str):
            raise ChatbotError(f"{name} must be {rule}, got {value!r}.")

        t = self.temperature
        if not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 <= t <= MAX_TEMPERATURE:
            bad("temperature", t, f"a number from 0 (greedy) to {MAX_TEMPERATURE:g}")
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0:
            bad("top_k", self.top_k, "a whole number >= 0 (0 turns it off)")
        p = self.top_p
        if not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 < p <= 1:
            bad("top_p", p, "in (0, 1] (1 turns it off)")
        r = self.repetition_penalty
        if not isinstance(r, (int, float)) or not math.isfinite(r) or not 1 <= r <= MAX_REPETITION_PENALTY:
            bad("repetition_penalty", r, f"a number from 1 (off) to {MAX_REPETITION_PENALTY:g}")
        m = self.min_p
        if not isinstance(m, (int, float)) or not math.isfinite(m) or not 0 <= m < 1:
            bad("min_p", m, "in [0, 1) (0 turns it off)")
        t = self.typical_p
        if not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 < t <= 1:
            bad("typical_p", t, "in (0, 1] (1 turns it off)")
        w = self.beam_width
        if not isinstance(w, int) or isinstance(w, bool) or not 1 <= w <= MAX_BEAM_WIDTH:
            bad("beam_width", w, f"a whole number from 1 (no beam search) to {MAX_BEAM_WIDTH}")
        rel = self.relevance
        if not isinstance(rel, (int, float)) or not math.isfinite(rel) or not 0 <= rel <= MAX_RELEVANCE:
            bad("relevance", rel, f"a number from 0 (off) to {MAX_RELEVANCE:g}")
        n = self.max_new_tokens
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_NEW_TOKENS_LIMIT:
            bad("max_new_tokens", n, f"a whole number from 1 to {MAX_NEW_TOKENS_LIMIT}")
        if isinstance(self.stop, str) or not all(isinstance(s, str) and s for s in self.stop):
            bad("stop", self.stop, "a list of non-empty strings")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            bad("seed", self.seed, "a whole number >= 0")

    def settings(self) -> dict:
        """The settings as plain values for transcripts and saved conversations (stop strings
        are not recorded)."""
        return {k: v for k, v in vars(self).items() if k != "stop"}

    def with_(self, **changes) -> "SamplingConfig":
        return replace(self, **changes)


def choose_token(logits: torch.Tensor, cfg: SamplingConfig, previous: list[int],
                 generator: torch.Generator) -> int:
    """Apply repetition penalty, temperature, top-k, top-p, min-p and typical-p to (vocab,)
    logits, in that order; sample."""
    logits = logits.float().clone()
    if cfg.repetition_penalty != 1.0 and previous:
        seen = torch.tensor(sorted(set(previous)), dtype=torch.long)
        values = logits[seen]
        logits[seen] = torch.where(values > 0, values / cfg.repetition_penalty,
                                   values * cfg.repetition_penalty)
    if cfg.temperature == 0:
        return int(logits.argmax())
    logits = scale_by_temperature(logits, cfg.temperature)
    if 0 < cfg.top_k < logits.numel():
        kth = torch.topk(logits, cfg.top_k).values[-1]
        logits[logits < kth] = -math.inf
    if cfg.top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True)
        probs = ordered.softmax(-1)
        outside = probs.cumsum(-1) - probs >= cfg.top_p  # tokens after the mass reached p
        ordered[outside] = -math.inf
        logits = torch.empty_like(logits).scatter_(0, order, ordered)
    if cfg.min_p > 0:
        probs = logits.softmax(-1)
        logits[probs < cfg.min_p * probs.max()] = -math.inf
    if cfg.typical_p < 1.0:
        logits = typical_filter(logits, cfg.typical_p)
    probs = logits.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def scale_by_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature, for any allowed temperature. Where that overflows (a temperature
    like 1e-40 turns a logit of 5 into 5e40, past float32's range, and softmax then gives NaN),
    it is taken in log space instead: the largest logit becomes 0, the others their distance
    below it divided by the temperature (in float64), which is -inf where that is too far. So a
    tiny temperature is the greedy limit: the likeliest token (or an even draw among equally
    likely ones), never a crash."""
    scaled = logits / temperature
    if torch.isfinite(scaled).all():
        return scaled
    return ((logits.double() - logits.max()) / temperature).float()


def typical_filter(logits: torch.Tensor, mass: float) -> torch.Tensor:
    """Locally typical sampling (Meister et al. 2022): keep the tokens whose surprise -log p is
    closest to the distribution's entropy (the expected surprise), until their probability
    reaches `mass`."""
    log_probs = logits.log_softmax(-1)
    probs = log_probs.exp()
    entropy = -(probs * log_probs.nan_to_num(neginf=0.0)).sum()
    distance = (-log_probs - entropy).abs()
    order = distance.argsort()
    mass_before = probs[order].cumsum(-1) - probs[order]
    drop = order[mass_before >= mass]
    out = logits.clone()
    out[drop] = -math.inf
    return out


@dataclass
class Reply:
    """What a generated reply has produced so far; the generator fills it in as it goes,
    so a reply cut short still knows its exact tokens and text."""

    ids: list[int]
    text: str = ""
    ended: bool = False  # the model closed its turn with <|end|>
    next_logits: torch.Tensor | None = None  # after the last token, for continuing the reply


def stream_reply(stepper: Stepper, tokenizer: Tokenizer, state: RecurrentState,
                 logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator,
                 reply: Reply) -> Iterator[str]:
    """Sample up to cfg.max_new_tokens tokens, feeding each one back in (so `state` always
    holds exactly the tokens in `reply.ids`), and yield text as soon as it is whole.

    Stops at the end-of-turn token (which is fed too, closing the turn), after a stop
    string, or at the token limit.
    """
    decoder = tokenizer.stream_decoder()
    try:
        for _ in range(cfg.max_new_tokens):
            token = choose_token(logits, cfg, reply.ids, generator)
            logits = reply.next_logits = stepper.step(token, state)
            reply.ids.append(token)
            if token == tokenizer.end_id:
                reply.ended = True
                break
            piece = decoder.push(token)
            if piece:
                reply.text += piece
                yield piece
                tail = reply.text[-(len(piece) + max(map(len, cfg.stop), default=0)):]
                if any(s in tail for s in cfg.stop):
                    break
    finally:
        rest = decoder.flush()
        reply.text += rest
    if rest:
        yield rest
