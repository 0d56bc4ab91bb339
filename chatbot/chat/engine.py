"""Many people at once: one generation engine per loaded model, stepping every conversation
that is generating at the moment as one batch, one token each per step.

Generating alone, a conversation computes matrix-vector products: each token reads every
weight. The engine's thread instead collects the replies in progress and advances them all
with one matrix-matrix product per layer (`Stepper.step_rows`), so the weights are read once
per step for the whole batch ("continuous batching": a reply joins at the next step after it
starts and leaves at the step after it ends, is stopped, or its reader goes away).

Each reply keeps everything that makes it that conversation's reply: its own state row, its
SamplingConfig (temperature, filters, stop strings, token limit) and its own torch.Generator,
from which only its own tokens are drawn (`choose_tokens`: exactly choose_token's tokens,
with greedy and plain-temperature rows done for the whole batch at once). So a reply does not
depend on what else is in the batch: greedy replies are the solo path's, and a seeded reply is
the same alone or batched (the logits of a row agree with the solo path's within 1e-5; tested
under 20 concurrent sessions with different settings).

Messages are fed (prefill) in the same loop, between two steps: at most PREFILL_CHUNK tokens
of each waiting message and PREFILL_BUDGET tokens in all per turn of the loop, first come
first served. So a long message delays the replies in progress by one budget at a time, not
by the whole message, and short messages are not stuck behind it.

The engine keeps at most LOOKAHEAD of a reply's tokens waiting for its reader, and wakes the
reader for its first token, then every WAKE_EVERY tokens (a thread switch per token and
session would cost more than the batching saves). The reader applies each token to its
`Reply` as it takes it (with the token's TokenStep when the reply is recorded), so a reply
stopped by its reader holds exactly the tokens the reader took (as the solo path's).
Closing the reply's stream (Stop, a closed tab) takes it out of the batch at the next step,
and the close waits until the engine has let go of the reply's generator. Beam search does not run here: it advances its beams as one batch of its own in
the session's thread, beside the engine, which it never blocks.

The thread starts with the first request and ends after IDLE_EXIT_S seconds with nothing to
do, so an engine whose model was dropped from the app's cache leaves nothing running; at the
interpreter's exit every engine is closed and its thread joined (a thread still inside torch
when the interpreter goes away aborts the process).
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections import deque
from typing import Iterator

import torch

from ..errors import ChatbotError
from ..lm.model import LanguageModel
from ..lm.state import RecurrentState
from ..lm.stepper import Stepper
from ..text.tokenizers import Tokenizer
from .sampling import Reply, SamplingConfig, TokenStep, choose_token, choose_tokens

PREFILL_CHUNK = 64  # tokens of one message fed per turn of the loop, in one forward
PREFILL_BUDGET = 256  # tokens of all messages fed per turn of the loop (~20 ms, default model)
LOOKAHEAD = 64  # tokens of a reply that may wait for its reader (then the reply pauses)
WAKE_EVERY = 4  # a reader is woken for its first token, then for every 4 (or its last)
IDLE_EXIT_S = 10.0

_ENGINES: "weakref.WeakSet[GenerationEngine]" = weakref.WeakSet()


@atexit.register
def _close_engines() -> None:
    for engine in list(_ENGINES):
        engine.close()


class _Feed:
    """A message being fed: the state and logits after `ids`, chunk by chunk."""

    def __init__(self, ids: list[int], state: RecurrentState):
        self.ids, self.state, self.done_upto = ids, state, 0
        self.logits: torch.Tensor | None = None
        self.done = False
        self.error: BaseException | None = None


class _Row:
    """One reply in the batch. The engine's thread alone touches everything but `outbox`,
    `cancelled`, `active`, `error` and `taken_any` (those under the engine's lock)."""

    def __init__(self, tokenizer: Tokenizer, cfg: SamplingConfig, generator: torch.Generator,
                 reply: Reply, state: RecurrentState, logits: torch.Tensor, lock: threading.Lock):
        self.cfg, self.generator = cfg, generator
        self.ids = list(reply.ids)  # the reply's tokens so far (the repetition penalty reads them)
        self.recorded = reply.steps is not None  # each token's TokenStep goes to the reader too
        self.state, self.logits = state, logits
        self.left = cfg.max_new_tokens
        self.end = tokenizer.end_id
        # The stop strings need the text; without them no decoding is done here.
        self.decoder = tokenizer.stream_decoder() if cfg.stop else None
        self.longest_stop = max(map(len, cfg.stop), default=0)
        self.text = reply.text  # a continued reply's stop check sees its earlier text too
        self.outbox: deque = deque()  # (token, logits after it, state after it, last, TokenStep or None)
        self.cancelled = False
        self.active = True  # in the engine's hands (until its last token or a cancel)
        self.error: BaseException | None = None
        self.ready = threading.Condition(lock)  # its reader waits on this alone
        self.taken_any = False

    def worth_waking(self) -> bool:
        """(Under the lock.) Whether the reader has reason to run: its first token, a few
        tokens, its last one, an error, or the engine letting go of it. Waking a reader per
        token would cost a thread switch per token and session."""
        if self.error is not None or not self.active:
            return True
        return bool(self.outbox) and (not self.taken_any or len(self.outbox) >= WAKE_EVERY)

    def last_after(self, token: int) -> bool:
        """Whether `token` ends the reply: <|end|>, the token limit, or a stop string (checked
        as sample_reply checks it: in the text up to the newest piece)."""
        self.left -= 1
        if token == self.end or self.left == 0:
            return True
        if self.decoder is not None:
            piece = self.decoder.push(token)
            if piece:
                self.text += piece
                tail = self.text[-(len(piece) + self.longest_stop):]
                return any(s in tail for s in self.cfg.stop)
        return False


class GenerationEngine:
    """The shared generation loop of one model. Thread-safe: any number of sessions, each
    in its own thread, call feed() and sample_reply() at the same time."""

    def __init__(self, model: LanguageModel, stepper: Stepper | None = None):
        self.model = model.eval()
        self.stepper = stepper or Stepper(model)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # the loop's thread and feed() wait on it
        self._feeds: deque[_Feed] = deque()
        self._rows: list[_Row] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self.steps = 0  # batched steps taken (for tests and the bench)
        self.widest = 0  # the most rows one step has advanced
        _ENGINES.add(self)

    def close(self) -> None:
        """Stop the loop: replies in progress and messages being fed end with a ChatbotError,
        later requests are refused. Returns when the loop's thread has ended."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # -- what sessions call -------------------------------------------------------------

    def feed(self, state: RecurrentState, ids: list[int]) -> tuple[torch.Tensor, RecurrentState]:
        """Run `ids` through the model on top of `state` in the engine's loop; return the
        next-token logits and the state after them (as ChatSession.feed computes them)."""
        job = _Feed(ids, state)
        with self._cond:
            self._wake()
            self._feeds.append(job)
            self._cond.wait_for(lambda: job.done)
        if job.error is not None:
            raise job.error
        return job.logits, job.state

    def sample_reply(self, tokenizer: Tokenizer, state: RecurrentState, logits: torch.Tensor,
                     cfg: SamplingConfig, generator: torch.Generator, reply: Reply) -> Iterator[str]:
        """sampling.sample_reply, with the tokens chosen in the engine's batch: the same
        pieces, the same `reply` (ids, text, ended, next_logits, state) however it ends."""
        decoder = tokenizer.stream_decoder()
        reply.state = state
        row = _Row(tokenizer, cfg, generator, reply, state, logits, self._lock)
        with self._cond:
            self._wake()
            self._rows.append(row)
        rest, taken = "", deque()
        try:
            while True:
                if not taken:  # take all the tokens ready, in one visit to the lock
                    with self._lock:
                        row.ready.wait_for(row.worth_waking)
                        if row.error is not None and not row.outbox:
                            raise row.error
                        if len(row.outbox) >= LOOKAHEAD:
                            self._cond.notify_all()  # the engine may be waiting for this reader
                        taken, row.outbox, row.taken_any = row.outbox, deque(), True
                token, reply.next_logits, reply.state, last, step = taken.popleft()
                reply.ids.append(token)
                if step is not None:
                    reply.steps.append(step)
                if token == tokenizer.end_id:
                    reply.ended = True
                    break
                piece = decoder.push(token)
                if piece:
                    reply.text += piece
                    yield piece
                if last:
                    break
        finally:
            self._leave(row)
            rest = decoder.flush()
            reply.text += rest
        if rest:
            yield rest

    def generating(self) -> int:
        """How many replies are in the batch now."""
        with self._cond:
            return len(self._rows)

    # -- the loop -------------------------------------------------------------------------

    def _wake(self) -> None:
        """(Under the lock.) Start the loop's thread if it is not running; tell it to look."""
        if self._closed:
            raise ChatbotError("the generation engine is closed (the server is stopping).")
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="generation-engine", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _leave(self, row: _Row) -> None:
        """Take `row` out of the batch (if it is still in it) and wait until the engine has
        let go of it, so the session may use its generator and state again."""
        with self._lock:
            if row.active:
                row.cancelled = True
                self._cond.notify_all()
                row.ready.wait_for(lambda: not row.active)

    def _next_work(self) -> tuple[list[_Feed], list[_Row]] | None:
        """(Under the lock.) Drop cancelled rows; wait for something to do. None: idle long
        enough, the thread ends."""
        while True:
            if self._closed:
                self._fail_all(ChatbotError("the generation engine is closed (the server is stopping)."))
                return None
            kept = []
            for row in self._rows:
                if row.cancelled:
                    row.active = False
                    row.ready.notify()
                else:
                    kept.append(row)
            self._rows = kept
            ready = [row for row in self._rows if len(row.outbox) < LOOKAHEAD]
            if self._feeds or ready:
                jobs, budget = [], PREFILL_BUDGET
                for job in self._feeds:
                    if budget <= 0:
                        break
                    jobs.append(job)
                    budget -= min(PREFILL_CHUNK, len(job.ids) - job.done_upto)
                return jobs, ready
            if self._rows:  # every reply is far ahead of its reader: wait for a reader
                self._cond.wait()
            elif not self._cond.wait(IDLE_EXIT_S) and not self._feeds and not self._rows:
                self._thread = None
                return None

    def _loop(self) -> None:
        try:
            with torch.inference_mode():
                while True:
                    with self._cond:
                        work = self._next_work()
                    if work is None:
                        return
                    jobs, rows = work
                    for job in jobs:
                        self._feed_chunk(job)
                    if rows:
                        self._step(rows)
        except BaseException as exc:  # noqa: BLE001 - a bug here must not leave readers waiting
            with self._lock:
                self._fail_all(exc)
            raise

    def _fail_all(self, exc: BaseException) -> None:
        """(Under the lock.) End every message being fed and every reply in the batch with
        `exc`, and let the loop's thread go (the next request starts a new one)."""
        for job in self._feeds:
            job.error, job.done = exc, True
        for row in self._rows:
            row.error, row.active = exc, False
            row.ready.notify()
        self._feeds.clear()
        self._rows = []
        self._thread = None
        self._cond.notify_all()

    def _feed_chunk(self, job: _Feed) -> None:
        try:
            ids = job.ids[job.done_upto: job.done_upto + PREFILL_CHUNK]
            logits, job.state = self.model(torch.tensor([ids], dtype=torch.long), job.state)
            job.logits = logits[0, -1].clone()
            del logits
            job.done_upto += len(ids)
            finished = job.done_upto >= len(job.ids)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            job.error, finished = exc, True
        if finished:
            with self._cond:
                self._feeds.remove(job)
                job.done = True
                self._cond.notify_all()

    def _step(self, rows: list[_Row]) -> None:
        """One token for each row: chosen from its logits with its settings and generator,
        then all fed in one batched step."""
        try:
            chosen: list[list[TokenStep] | None] = [[] if row.recorded else None for row in rows]
            if len(rows) == 1:  # alone: the solo path's token choice and matrix-vector step
                row = rows[0]
                tokens = [choose_token(row.logits, row.cfg, row.ids, row.generator, chosen[0])]
                logits, after = self.stepper.step(tokens[0], row.state)
                logits, states = logits[None], [after]
            else:
                tokens = choose_tokens(torch.stack([row.logits for row in rows]), [row.cfg for row in rows],
                                       [row.ids for row in rows], [row.generator for row in rows], chosen)
                batch = RecurrentState.stack_rows([row.state for row in rows])
                logits, after = self.stepper.step_rows(torch.tensor(tokens), batch)
                states = [after.rows(slice(i, i + 1)) for i in range(len(rows))]
            items = []
            for i, (row, token) in enumerate(zip(rows, tokens)):
                row.ids.append(token)
                row.state, row.logits = states[i], logits[i]
                items.append((token, row.logits, row.state, row.last_after(token),
                              chosen[i][0] if chosen[i] else None))
        except BaseException as exc:  # noqa: BLE001 - handed to every reader in the step
            with self._lock:
                for row in rows:
                    row.error, row.active = exc, False
                    row.ready.notify()
                self._rows = [row for row in self._rows if row.error is None]
            return
        with self._lock:
            self.steps += 1
            self.widest = max(self.widest, len(rows))
            for row, item in zip(rows, items):
                row.outbox.append(item)
                if item[3]:
                    row.active = False
                if row.worth_waking():
                    row.ready.notify()
            self._rows = [row for row in self._rows if row.active]
