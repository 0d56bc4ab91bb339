"""Choosing the next token, and the generator that streams a reply one piece at a time."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Iterator

import torch

from ..errors import ChatbotError
from ..lm.state import RecurrentState
from ..lm.stepper import Stepper
from ..text.tokenizers import Tokenizer

MAX_NEW_TOKENS_LIMIT = 20_000
MAX_BEAM_WIDTH = 16
MAX_TEMPERATURE = 10.0
MAX_REPETITION_PENALTY = 10.0
MAX_RELEVANCE = 2.0


@dataclass(frozen=True)
class Setting:
    """One setting, declared once: the chat page's widgets, the command-line flags, the
    validation and restoring a saved conversation are all built from it."""

    label: str
    low: float
    high: float | None  # None: no upper limit
    help: str
    step: float | None = None  # a slider's step; None for a whole number
    open_low: bool = False  # `low` itself is not allowed
    open_high: bool = False
    group: str = "sampling"  # or "beam search": beam_width and relevance decide whether it runs

    @property
    def whole(self) -> bool:
        return self.step is None

    def rule(self) -> str:
        lo, hi = f"{self.low:g}", f"{self.high:g}" if self.high is not None else None
        if self.whole:
            return f"a whole number from {lo} to {hi}" if hi else f"a whole number >= {lo}"
        if self.open_low or self.open_high:
            return f"in {'(' if self.open_low else '['}{lo}, {hi}{')' if self.open_high else ']'}"
        return f"a number from {lo} to {hi}"

    def accepts(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.whole else (int, float)):
            return False
        if not math.isfinite(value) or value < self.low or (self.open_low and value == self.low):
            return False
        return self.high is None or value < self.high or (value == self.high and not self.open_high)


def setting(default, label: str, low: float, high: float | None, help: str, **options):
    return field(default=default, metadata={"setting": Setting(label, low, high, help, **options)})


@dataclass(frozen=True)
class SamplingConfig:
    """How a reply is chosen, checked on creation so a bad value fails with a clear message."""

    temperature: float = setting(0.8, "Temperature", 0, MAX_TEMPERATURE, "0 = always the likeliest token (greedy); "
                                 "higher = more surprising", step=0.05)
    top_k: int = setting(0, "Top-k", 0, None, "keep only the k likeliest tokens; 0 = off")
    top_p: float = setting(1.0, "Top-p", 0, 1, "keep the smallest set of tokens whose probability "
                           "reaches p; 1 = off", step=0.01, open_low=True)
    repetition_penalty: float = setting(1.0, "Repetition penalty", 1, MAX_REPETITION_PENALTY, "above 1, tokens already "
                                        "in the reply are less likely; 1 = off", step=0.05)
    min_p: float = setting(0.0, "Min-p", 0, 1, "drop tokens less likely than this fraction of the "
                           "likeliest one; 0 = off", step=0.01, open_high=True)
    typical_p: float = setting(1.0, "Typical-p", 0, 1, "keep the tokens closest to the expected "
                               "surprise, up to this probability mass; 1 = off", step=0.01, open_low=True)
    max_new_tokens: int = setting(300, "Max new tokens", 1, MAX_NEW_TOKENS_LIMIT, "the longest reply, in tokens")
    stop: tuple[str, ...] = ()  # stop right after any of these strings appears in the reply
    seed: int | None = None
    beam_width: int = setting(1, "Beam width", 1, MAX_BEAM_WIDTH, "beam search with this many beams "
                              "instead of sampling (temperature and filters then do not apply); 1 = off",
                              group="beam search")
    relevance: float = setting(0.0, "Relevance", 0, MAX_RELEVANCE, "penalise replies likely without the "
                               "conversation (uses beam search); 0 = off", step=0.05, group="beam search")

    def __post_init__(self):
        for name, s in SETTINGS.items():
            if not s.accepts(getattr(self, name)):
                raise ChatbotError(f"{name} must be {s.rule()}, got {getattr(self, name)!r}.")
        if isinstance(self.stop, str) or not all(isinstance(s, str) and s for s in self.stop):
            raise ChatbotError(f"stop must be a list of non-empty strings, got {self.stop!r}.")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise ChatbotError(f"seed must be a whole number >= 0, got {self.seed!r}.")

    @property
    def beam_search(self) -> bool:
        return self.beam_width > 1 or self.relevance > 0

    def settings(self) -> dict:
        """The settings as plain values for transcripts and saved conversations (stop strings
        are not recorded)."""
        return {k: v for k, v in vars(self).items() if k != "stop"}

    def with_(self, **changes) -> "SamplingConfig":
        return replace(self, **changes)


# Every declared setting by name, in the order the chat page and --help show them.
SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in fields(SamplingConfig)
                                if "setting" in f.metadata}


# Named settings for comparing replies side by side (ChatSession.compare, the chat page's
# Compare): each sets every sampling setting (the rest at its default), never the length, seed
# or stop strings, which stay the user's; beam search is off.
PRESETS: dict[str, dict] = {
    "precise": {"temperature": 0.3, "top_k": 20},
    "balanced": {"temperature": 0.8, "top_p": 0.95},
    "creative": {"temperature": 1.2, "min_p": 0.02},
}


def preset(name: str, base: SamplingConfig) -> SamplingConfig:
    """`base` with the sampling settings of PRESETS[name] (its length, seed and stops kept)."""
    if name not in PRESETS:
        raise ChatbotError(f"there is no preset {name!r}; the presets are {', '.join(PRESETS)}.")
    defaults = SamplingConfig()
    reset = {key: getattr(defaults, key) for key in SETTINGS if key != "max_new_tokens"}
    return base.with_(**{**reset, **PRESETS[name]})


STAGES = ("model", "repetition penalty", "temperature", "top-k", "top-p", "min-p", "typical-p")
TOP_CANDIDATES = 10  # a TokenStep keeps the model's 10 likeliest tokens (and the one sampled)


@dataclass
class TokenStep:
    """How one token of a reply was chosen, recorded by choose_token as it chose it.

    `stages` names the distributions in the order choose_token made them: "model" (the
    model's own), then each filter in effect; the last is exactly the distribution the token
    was drawn from. `candidates` are the model's TOP_CANDIDATES likeliest tokens, then the
    sampled token if it is not among them; `probs[i][j]` is candidate i's probability after
    stage j (0 once a filter removed it)."""

    token: int
    stages: tuple[str, ...]
    candidates: list[int]
    probs: list[list[float]]
    probability: float  # the sampled token's probability in the distribution it was drawn from
    surprise: float  # -ln of the model's own probability of the token, in nats
    entropy: float  # of the model's own distribution, in nats

    def removed_by(self, row: int) -> str | None:
        """The stage that took candidate `row` out (its probability fell to 0), if one did."""
        for name, before, after in zip(self.stages[1:], self.probs[row], self.probs[row][1:]):
            if before > 0 and after == 0:
                return name
        return None


def _step_record(token: int, stages: list[tuple[str, torch.Tensor]], sampled_from: torch.Tensor) -> TokenStep:
    """The TokenStep for `token`, from each stage's logits; the last stage's probabilities are
    `sampled_from`, the very tensor the token was drawn from. A dozen small tensor operations
    (the table is only the candidates' columns), so recording costs little per token."""
    top = torch.topk(stages[0][1], min(TOP_CANDIDATES, sampled_from.numel())).indices
    candidates = top.tolist()
    if token not in candidates:
        candidates.append(token)
        top = torch.tensor(candidates)
    if len(stages) == 2:
        table = torch.stack([stages[0][1].softmax(-1), sampled_from])
    elif len(stages) > 2:
        table = torch.cat([torch.stack([logits for _, logits in stages[:-1]]).softmax(-1), sampled_from[None]])
    else:
        table = sampled_from[None]
    probs = table[:, top].T.tolist()
    row = probs[candidates.index(token)]
    model = stages[0][1]  # the model's logits (finite): its entropy is logsumexp - E[logit]
    entropy = float(torch.logsumexp(model, 0) - torch.dot(table[0], model))
    return TokenStep(token, tuple(name for name, _ in stages), candidates, probs, row[-1],
                     -math.log(row[0]) if row[0] > 0 else math.inf, max(entropy, 0.0))


def _unpenalised_stages(logits: torch.Tensor, cfg: SamplingConfig) -> list[tuple[str, torch.Tensor]]:
    """The first stages of a record where the repetition penalty changed nothing (nothing in
    the reply yet): the model's logits, and the penalty's (the same) when it is on."""
    return [("model", logits)] + ([("repetition penalty", logits)] if cfg.repetition_penalty != 1.0 else [])


def choose_token(logits: torch.Tensor, cfg: SamplingConfig, previous: list[int],
                 generator: torch.Generator, steps: list[TokenStep] | None = None) -> int:
    """Apply repetition penalty, temperature, top-k, top-p, min-p and typical-p to (vocab,)
    logits, in that order; sample. With a `steps` list, a TokenStep of this choice is appended
    to it (the same token either way: recording draws nothing from the generator)."""
    token, stages, sampled_from = _choose(logits, cfg, previous, generator, steps is not None)
    if steps is not None:
        steps.append(_step_record(token, stages, sampled_from))
    return token


def _choose(logits: torch.Tensor, cfg: SamplingConfig, previous: list[int], generator: torch.Generator,
            record: bool) -> tuple[int, list[tuple[str, torch.Tensor]] | None, torch.Tensor | None]:
    """choose_token's work: the token and, when `record`, each stage's logits and the
    probabilities the token was drawn from (for its TokenStep)."""
    stages = [("model", logits.float())] if record else None  # (never written to)
    logits = logits.float().clone()
    if cfg.repetition_penalty != 1.0 and previous:
        seen = torch.tensor(sorted(set(previous)), dtype=torch.long)
        values = logits[seen]
        logits[seen] = torch.where(values > 0, values / cfg.repetition_penalty,
                                   values * cfg.repetition_penalty)
    if stages is not None and cfg.repetition_penalty != 1.0:
        stages.append(("repetition penalty", logits))  # (temperature makes a new tensor)
    if cfg.temperature == 0:
        token = int(logits.argmax())
        if stages is None:
            return token, None, None
        greedy = torch.zeros_like(logits)
        greedy[token] = 1.0
        stages.append(("temperature", greedy))
        return token, stages, greedy
    logits = scale_by_temperature(logits, cfg.temperature)  # (a new tensor)
    if stages is not None and cfg.temperature != 1.0:  # top-k and min-p write into theirs
        stages.append(("temperature", logits.clone() if 0 < cfg.top_k < logits.numel() or cfg.min_p > 0 else logits))
    if 0 < cfg.top_k < logits.numel():
        kth = torch.topk(logits, cfg.top_k).values[-1]
        logits[logits < kth] = -math.inf
        if stages is not None:
            stages.append(("top-k", logits.clone()))
    if cfg.top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True)
        probs = ordered.softmax(-1)
        outside = probs.cumsum(-1) - probs >= cfg.top_p  # tokens after the mass reached p
        ordered[outside] = -math.inf
        logits = torch.empty_like(logits).scatter_(0, order, ordered)
        if stages is not None:
            stages.append(("top-p", logits.clone()))
    if cfg.min_p > 0:
        probs = logits.softmax(-1)
        logits[probs < cfg.min_p * probs.max()] = -math.inf
        if stages is not None:
            stages.append(("min-p", logits.clone()))
    if cfg.typical_p < 1.0:
        logits = typical_filter(logits, cfg.typical_p)
        if stages is not None:
            stages.append(("typical-p", logits))
    probs = logits.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=generator)), stages, probs


def choose_tokens(logits: torch.Tensor, cfgs: list[SamplingConfig], previous: list[list[int]],
                  generators: list[torch.Generator],
                  steps: list[list[TokenStep] | None] | None = None) -> list[int]:
    """choose_token for each row of (batch, vocab) logits, row i with cfgs[i], previous[i] and
    generators[i]: exactly the tokens choose_token gives row by row, each drawing from its own
    generator only. The common rows are done for the whole batch at once: greedy ones (one
    argmax) and plain temperature sampling (one softmax; the draw is torch.multinomial's for
    one sample, argmax(p / q) with q ~ Exp(1) from the row's generator). Rows with a filter
    or a repetition penalty in effect, or whose scaled logits overflow, go through
    choose_token itself. A row with a list in `steps` gets choose_token's TokenStep appended
    (a recorded plain row is drawn in the batch and recorded from the batch's probabilities,
    which its token was drawn from; a recorded greedy row goes through choose_token), the
    numbers of all recorded rows computed together (_step_records)."""
    steps = steps if steps is not None else [None] * len(cfgs)
    pending: dict[int, tuple] = {}  # row: (token, stages, sampled-from probabilities) to record
    tokens: list[int | None] = [None] * len(cfgs)
    greedy, plain, temperatures = [], [], []
    for i, (cfg, seen) in enumerate(zip(cfgs, previous)):
        if cfg.repetition_penalty != 1.0 and seen:
            continue
        if cfg.temperature == 0 and steps[i] is None:
            greedy.append(i)
        elif cfg.temperature != 0 and (cfg.top_k <= 0 or cfg.top_k >= logits.shape[-1]) and cfg.top_p == 1.0 \
                and cfg.min_p == 0 and cfg.typical_p == 1.0:
            plain.append(i)
            temperatures.append(cfg.temperature)
    if greedy:
        for i, token in zip(greedy, logits[greedy].float().argmax(-1).tolist()):
            tokens[i] = token
    if plain:
        scaled = logits[plain].float() / torch.tensor(temperatures, dtype=torch.float32)[:, None]
        finite = torch.isfinite(scaled).all(-1).tolist()
        probs = scaled.softmax(-1)
        q = torch.empty_like(probs)
        for row, i in enumerate(plain):
            if finite[row]:
                q[row].exponential_(1, generator=generators[i])
        for row, (i, token) in enumerate(zip(plain, (probs / q).argmax(-1).tolist())):
            if finite[row]:
                tokens[i] = token
                if steps[i] is not None:
                    stages = _unpenalised_stages(logits[i].float(), cfgs[i])
                    if cfgs[i].temperature != 1.0:
                        stages.append(("temperature", scaled[row]))
                    pending[i] = (token, stages, probs[row])
    for i, token in enumerate(tokens):
        if token is None:
            tokens[i], stages, sampled_from = _choose(logits[i], cfgs[i], previous[i], generators[i],
                                                      steps[i] is not None)
            if steps[i] is not None:
                pending[i] = (tokens[i], stages, sampled_from)
    if pending:
        for i, record in zip(pending, _step_records(list(pending.values()))):
            steps[i].append(record)
    return tokens


def _step_records(pending: list[tuple[int, list[tuple[str, torch.Tensor]], torch.Tensor]]) -> list[TokenStep]:
    """_step_record for many rows of a batch at once, each (token, stages, sampled_from): the
    same numbers, from a fixed number of tensor operations however many rows there are."""
    tokens = [token for token, _, _ in pending]
    models = torch.stack([stages[0][1] for _, stages, _ in pending])
    index = torch.cat([torch.topk(models, min(TOP_CANDIDATES, models.shape[-1])).indices,
                       torch.tensor(tokens)[:, None]], 1)
    finals = torch.stack([sampled_from for _, _, sampled_from in pending]).gather(1, index).tolist()
    model_probs = models.softmax(-1)
    entropy = (torch.logsumexp(models, -1) - (model_probs * models).sum(-1)).tolist()
    model_columns = model_probs.gather(1, index).tolist()
    inner = [(r, logits) for r, (_, stages, _) in enumerate(pending) for _, logits in stages[1:-1]]
    before = torch.stack([logits for _, logits in inner]).softmax(-1).gather(
        1, index[[r for r, _ in inner]]).tolist() if inner else []
    out, k = [], 0
    for r, ((token, stages, _), candidates) in enumerate(zip(pending, index.tolist())):
        size = len(candidates) - 1 if token in candidates[:-1] else len(candidates)
        middle = max(len(stages) - 2, 0)
        columns = ([model_columns[r]] if len(stages) > 1 else []) + before[k:k + middle] + [finals[r]]
        k += middle
        probs = [[column[c] for column in columns] for c in range(size)]
        row = probs[candidates.index(token)]
        out.append(TokenStep(token, tuple(name for name, _ in stages), candidates[:size], probs, row[-1],
                             -math.log(row[0]) if row[0] > 0 else math.inf, max(entropy[r], 0.0)))
    return out


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
    state: RecurrentState | None = None  # the memory after the last token
    # How each token was chosen (TokenStep), one per id, when the reply is recorded: a list
    # set before sampling starts (ChatSession does, when asked); None: not recorded.
    steps: list[TokenStep] | None = None


def sample_reply(stepper: Stepper, tokenizer: Tokenizer, state: RecurrentState,
                 logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator,
                 reply: Reply) -> Iterator[str]:
    """Sample up to cfg.max_new_tokens tokens from `state` (whose next-token logits are
    `logits`), feeding each one back in (so `reply.state` always holds exactly the tokens
    in `reply.ids`), and yield text as soon as it is whole.

    Stops at the end-of-turn token (which is fed too, closing the turn), after a stop
    string, or at the token limit.
    """
    decoder = tokenizer.stream_decoder()
    reply.state = state
    chosen: list[TokenStep] | None = None if reply.steps is None else []
    try:
        for _ in range(cfg.max_new_tokens):
            token = choose_token(logits, cfg, reply.ids, generator, chosen)
            logits, reply.state = stepper.step(token, reply.state)
            reply.next_logits = logits
            reply.ids.append(token)
            if chosen:
                reply.steps.append(chosen.pop())
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
