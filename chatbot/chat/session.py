"""A conversation whose memory is the recurrent state.

Each turn feeds only the new message (between turn markers) on top of the state the last
reply left; the history is never re-read, so turn 500 costs what turn 1 costs. Before each
reply the state is snapshotted so the reply can be regenerated and the conversation rewound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from ..errors import ChatbotError
from ..lm.model import LanguageModel
from ..lm.state import RecurrentState
from ..lm.stepper import Stepper
from ..text.corpus import turn_ids
from ..text.tokenizers import Tokenizer
from .beam import beam_reply
from .engine import GenerationEngine
from .sampling import Reply, SamplingConfig, sample_reply

MAX_MESSAGE_CHARS = 4000  # longer messages are cut to this (the turn records by how much)
FEED_CHUNK = 1024  # tokens per forward when feeding text (see ChatSession.feed)
MAX_COMPARED = 4  # the most settings one message is answered under at once (see compare)


@dataclass
class Turn:
    user: str
    prompt_ids: list[int]  # exactly what was fed for the message, turn markers included
    state_before_user: RecurrentState
    state_before_reply: RecurrentState
    logits_before_reply: torch.Tensor
    reply: Reply = field(default_factory=lambda: Reply(ids=[]))
    cut_from: int | None = None  # the message's length before it was cut to MAX_MESSAGE_CHARS
    stats: dict = field(default_factory=dict)  # how the reply was made (the app's numbers under it)

    @property
    def tokens_fed(self) -> int:
        return len(self.prompt_ids) + len(self.reply.ids)


@dataclass
class SessionRecord:
    """A conversation as ChatSession.record() gives it and restore() takes it back."""

    earlier: list[tuple[str, str]]  # words only: (message, reply) pairs whose memory is not kept
    turns: list[Turn] = field(default_factory=list)
    state: RecurrentState | None = None  # the memory after the last turn (None: fresh)
    generator: torch.Tensor | None = None  # the sampling generator's position


@dataclass
class Candidate:
    """One of the replies compare() makes to a message, under its own settings and generator."""

    sampling: SamplingConfig
    reply: Reply
    generator: torch.Generator


@dataclass
class Comparison:
    """A message answered under several settings, waiting for the user to keep one reply."""

    turn: Turn  # not yet in the session's turns: keep() puts it there with the kept reply
    candidates: list[Candidate]


def interleave(streams: list[Iterator[str]]) -> Iterator[tuple[int, str]]:
    """(i, piece) from each of `streams` in turn, a piece at a time, until all have ended: how
    the replies of ChatSession.compare are read so that they advance together (with the
    engine, their tokens are chosen in one batch)."""
    live = dict(enumerate(streams))
    while live:
        for i, stream in list(live.items()):
            piece = next(stream, None)
            if piece is None:
                del live[i]
            else:
                yield i, piece


def reply_seed(seed: int, turn_number: int, tokens_so_far: int = 0) -> int:
    """The generator seed for a reply: a function of the user's seed and the reply's place
    (turn number, and how many tokens a continued reply already has)."""
    return (seed * 1_000_003 + turn_number * 100_003 + tokens_so_far) % (2**63)


class ChatSession:
    """One person's conversation with a shared model. Not thread-safe: one per user.

    With an `engine` (one GenerationEngine per model, shared by all sessions), messages are
    fed and sampled replies chosen in the engine's batch, together with every other session
    generating at that moment; the replies are the same as without it (see engine.py)."""

    def __init__(self, model: LanguageModel, tokenizer: Tokenizer,
                 sampling: SamplingConfig | None = None, stepper: Stepper | None = None,
                 engine: GenerationEngine | None = None):
        if model.config.vocab_size != tokenizer.vocab_size:
            raise ChatbotError("the model and tokenizer come from different checkpoints.")
        if engine is not None and engine.model is not model:
            raise ChatbotError("the generation engine belongs to another model.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.sampling = sampling or SamplingConfig()
        self.engine = engine
        self.stepper = stepper or (engine.stepper if engine is not None else Stepper(model))
        self._fresh: tuple[torch.Tensor, RecurrentState] | None = None  # see _fresh_start
        # Called after each token a beam search examines, (done, most): a front end shows the
        # search working and may raise from it to interrupt (see beam.py).
        self.on_beam_step: Callable[[int, int], None] | None = None
        # Record how each sampled token was chosen (Reply.steps: the chat page's token view).
        self.record_steps = False
        self.reset()

    def reset(self) -> None:
        """Forget everything: zero state, empty transcript."""
        self.state = self.model.initial_state(1)
        self.turns: list[Turn] = []
        self.comparing: Comparison | None = None  # replies compared, none kept yet (see compare)
        # (message, reply) pairs shown before `turns` whose memory is not in `state`: a
        # conversation restored under another model keeps its words but starts a fresh memory.
        self.earlier: list[tuple[str, str]] = []
        self.generator = torch.Generator()
        self.generator.seed()

    def record(self) -> SessionRecord:
        """Everything needed to go on with this conversation exactly (see conversations.py)."""
        return SessionRecord(list(self.earlier), list(self.turns), self.state, self.generator.get_state())

    def restore(self, record: SessionRecord) -> None:
        """Start over from a record: its words, its turns, its memory and generator position."""
        self.reset()
        self.earlier, self.turns = list(record.earlier), list(record.turns)
        if record.state is not None:
            self.state = record.state
        if record.generator is not None:
            self.generator.set_state(record.generator)

    def send(self, message: str) -> Iterator[str]:
        """Feed the user's message, then stream the bot's reply piece by piece. A message
        over MAX_MESSAGE_CHARS is cut to that length (turn.cut_from says it was)."""
        turn = self._feed_message(message)
        self.turns.append(turn)
        return self._generate(turn)

    def compare(self, message: str, settings: list[SamplingConfig]) -> list[Iterator[str]]:
        """Feed the message once, then answer it under each of 2 to MAX_COMPARED settings from
        the same snapshot; returns one stream per setting (read them in any order, or in turns:
        with an engine their tokens are chosen in one batch). Candidate i is sampled exactly
        as a chat with settings[i] would sample this reply (with a seed, from the same seeded
        generator). The session waits in `comparing` until keep() or discard_comparison()."""
        if not 2 <= len(settings) <= MAX_COMPARED:
            raise ChatbotError(f"compare 2 to {MAX_COMPARED} settings, not {len(settings)}.")
        turn = self._feed_message(message)
        place = len(self.turns) + 1  # the turn number the reply will have once kept
        candidates = []
        for cfg in settings:
            generator = torch.Generator()
            if cfg.seed is not None:
                generator.manual_seed(reply_seed(cfg.seed, place))
            else:
                generator.seed()
            candidates.append(Candidate(cfg, Reply(ids=[]), generator))
        self.comparing = Comparison(turn, candidates)
        return [self._pieces(turn.logits_before_reply, c.reply, c.sampling, c.generator,
                             turn.state_before_reply.clone()) for c in candidates]

    def keep(self, index: int) -> Turn:
        """Keep compared reply `index` (close its stream first): the turn takes that reply,
        the memory its state, the generator its position and the session its settings, so
        the chat goes on as one that got that reply directly would. The others are dropped;
        turn.stats["compared"] records the settings compared and which was kept."""
        if self.comparing is None:
            raise ChatbotError("there are no compared replies to keep.")
        turn, candidates = self.comparing.turn, self.comparing.candidates
        if not 0 <= index < len(candidates):
            raise ChatbotError(f"there is no compared reply {index + 1}; there are {len(candidates)}.")
        kept = candidates[index]
        turn.reply = kept.reply
        turn.stats = {"compared": {"settings": [c.sampling.settings() for c in candidates], "kept": index}}
        self.turns.append(turn)
        self.state = kept.reply.state if kept.reply.state is not None else turn.state_before_reply.clone()
        self.generator.set_state(kept.generator.get_state())
        self.sampling = kept.sampling
        self.comparing = None
        return turn

    def discard_comparison(self) -> str:
        """Drop every compared reply and the message with them (the memory goes back to
        before it); returns the message so it can be edited."""
        if self.comparing is None:
            raise ChatbotError("there are no compared replies to discard.")
        turn, self.comparing = self.comparing.turn, None
        self.state = turn.state_before_user.clone()
        return turn.user

    def _not_comparing(self) -> None:
        if self.comparing is not None:
            raise ChatbotError("keep one of the compared replies (or discard them all) first.")

    def _feed_message(self, message: str) -> Turn:
        """Feed `<|user|>message<|end|><|bot|>`; the turn it makes (not yet in `turns`)."""
        self._not_comparing()
        message, cut_from = self._check(message)
        # A reply cut short (token limit, stop string, closed stream) never fed its <|end|>;
        # close that turn first so the model sees the layout it was trained on.
        last = self.turns[-1].reply if self.turns else None
        prefix = [self.tokenizer.end_id] if last is not None and not last.ended else []
        ids = prefix + turn_ids(self.tokenizer, "user", message) + [self.tokenizer.bot_id]
        before_user = self.state.clone()
        logits = self.feed(ids)
        return Turn(message, ids, before_user, self.state.clone(), logits, cut_from=cut_from)

    def regenerate(self) -> Iterator[str]:
        """Sample the last reply again from the state snapshotted before it. With a seed the
        same reply comes back (the snapshot is exact); without one, a new version."""
        self._not_comparing()
        if not self.turns:
            raise ChatbotError("there is no reply to regenerate yet.")
        turn = self.turns[-1]
        self.state = turn.state_before_reply.clone()
        turn.reply = Reply(ids=[])
        return self._generate(turn)

    def continue_reply(self) -> Iterator[str]:
        """Extend the last reply from where it stopped (token limit, stop string or Stop)."""
        self._not_comparing()
        if not self.turns:
            raise ChatbotError("there is no reply to continue yet.")
        turn = self.turns[-1]
        if turn.reply.ended:
            raise ChatbotError("the last reply is finished (the bot ended its turn); send a new message.")
        if turn.reply.next_logits is None:  # stopped before its first token
            return self._generate(turn)
        self._seed(len(self.turns), len(turn.reply.ids))
        return self._decode(turn.reply.next_logits, turn.reply)

    def rewind(self) -> str:
        """Undo the last turn (message and reply); returns the message so it can be edited.
        While replies are compared, it drops them and their message."""
        if self.comparing is not None:
            return self.discard_comparison()
        if not self.turns:
            raise ChatbotError("there is nothing to rewind.")
        turn = self.turns.pop()
        self.state = turn.state_before_user.clone()
        return turn.user

    def complete(self, text: str) -> Iterator[str]:
        """Continue raw text (no turn markers) from the current state: plain language-model
        sampling, for `python -m chatbot generate`. The transcript is not touched."""
        if not text:
            raise ChatbotError("the prompt is empty: give some text to continue.")
        logits = self.feed(self.tokenizer.encode(text))
        self._seed(len(self.turns))
        return self._decode(logits, Reply(ids=[]))

    def feed(self, ids: list[int]) -> torch.Tensor:
        """Run ids through the model on top of the current state, FEED_CHUNK tokens per
        forward with the state carried between them (the same result as one forward), so a
        100,000-character prompt costs one chunk's activations and logits, not the whole
        text's; return the next-token logits."""
        if not ids:
            raise ChatbotError("nothing to feed: the text encodes to no tokens.")
        if self.engine is not None:  # in the engine's loop, in chunks between its steps
            last, self.state = self.engine.feed(self.state, ids)
            return last
        state = self.state
        with torch.inference_mode():
            for start in range(0, len(ids), FEED_CHUNK):
                x = torch.tensor([ids[start:start + FEED_CHUNK]], dtype=torch.long)
                logits, state = self.model(x, state)
                last = logits[0, -1].clone()
                del logits
        self.state = state
        return last

    def transcript(self) -> list[dict]:
        out = []
        for user, reply in self.earlier + [(t.user, t.reply.text) for t in self.turns]:
            out += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        return out

    def _fresh_start(self) -> tuple[torch.Tensor, RecurrentState]:
        """A new chat right after the bot marker: what relevance compares a reply against."""
        if self._fresh is None:
            with torch.inference_mode():
                logits, after = self.model(torch.tensor([[self.tokenizer.bot_id]]))
            self._fresh = (logits[0, -1], after)
        return self._fresh

    def _decode(self, logits: torch.Tensor, reply: Reply) -> Iterator[str]:
        """The session's reply: its settings and generator, from its state, which then
        follows the reply."""
        pieces = self._pieces(logits, reply, self.sampling, self.generator, self.state)
        return self._following(pieces, reply)

    def _pieces(self, logits: torch.Tensor, reply: Reply, cfg: SamplingConfig,
                generator: torch.Generator, state: RecurrentState) -> Iterator[str]:
        """Sampling, or beam search when the settings ask for it, from `state`."""
        if cfg.beam_search or not self.record_steps:
            reply.steps = None  # (a reply partly searched by beams has no complete record)
        elif reply.steps is None and not reply.ids:
            reply.steps = []  # a reply whose earlier tokens were not recorded stays unrecorded
        if cfg.beam_search:
            fresh_logits, fresh_state = self._fresh_start() if cfg.relevance > 0 else (None, None)
            return beam_reply(self.model, self.tokenizer, state, logits, cfg, reply,
                              fresh_logits, fresh_state, self.on_beam_step)
        if self.engine is not None:
            return self.engine.sample_reply(self.tokenizer, state, logits, cfg, generator, reply)
        return sample_reply(self.stepper, self.tokenizer, state, logits, cfg, generator, reply)

    def _following(self, pieces: Iterator[str], reply: Reply) -> Iterator[str]:
        """Stream `pieces`; however the stream ends (done, stopped, closed), the memory
        then holds exactly the tokens the reply holds."""
        try:
            yield from pieces
        finally:
            pieces.close()
            if reply.state is not None:
                self.state = reply.state

    def _generate(self, turn: Turn) -> Iterator[str]:
        """Sample a reply from the snapshot. With a seed, reply n draws from a generator seeded
        by (seed, n): a reply depends only on the state, the settings and its place in the
        chat, so it can be reproduced after a regenerate or a reload."""
        self._seed(len(self.turns))
        return self._decode(turn.logits_before_reply, turn.reply)

    def _seed(self, turn_number: int, tokens_so_far: int = 0) -> None:
        if self.sampling.seed is not None:
            self.generator.manual_seed(reply_seed(self.sampling.seed, turn_number, tokens_so_far))

    @staticmethod
    def _check(message: str) -> tuple[str, int | None]:
        """Refuse an empty message; cut a huge one (the cut is checked first, so a 100 MB
        paste costs no more than MAX_MESSAGE_CHARS characters of work)."""
        if not isinstance(message, str):
            raise ChatbotError("the message is empty: type something to say.")
        cut_from = len(message) if len(message) > MAX_MESSAGE_CHARS else None
        message = message[:MAX_MESSAGE_CHARS]
        if not message.strip():
            raise ChatbotError("the message is empty: type something to say.")
        return message, cut_from
