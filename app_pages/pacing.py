"""Streaming to a screen at a bounded rate, and the numbers a reply shows afterwards.

The model can sample thousands of tokens a second; a browser repainting for each one would
spend its time on paint, not text. `paced` groups pieces so the screen gets at most
`max_updates` updates a second while the model samples at full speed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator


@dataclass
class StreamStats:
    started: float  # when the user's message was submitted
    first_piece: float | None = None
    finished: float | None = None
    updates: int = 0  # how many times the screen was updated
    generating: float = 0.0  # seconds spent producing pieces, not waiting for the page

    def time_to_first_token(self) -> float | None:
        return None if self.first_piece is None else self.first_piece - self.started

    def tokens_per_second(self, tokens: int) -> float:
        """Over the generation alone: the time the page took to draw each update is not
        counted (the model waits then), so a slow browser does not make the model look slow."""
        return tokens / self.generating if self.generating > 0 else 0.0


def paced(pieces: Iterator[str], stats: StreamStats, max_updates: float = 30.0,
          clock: Callable[[], float] = time.perf_counter) -> Iterator[str]:
    """Yield the text of `pieces`, grouped so at most `max_updates` chunks go out per second.
    The first piece goes out at once (time to first token is what a person feels most)."""
    interval = 1.0 / max_updates
    buffer: list[str] = []
    last = None
    asked = clock()  # when the model was last asked for a piece
    try:
        for piece in pieces:
            now = clock()
            stats.generating += now - asked
            asked = now
            if stats.first_piece is None:
                stats.first_piece = now
            buffer.append(piece)
            if last is None or now - last >= interval:
                stats.updates += 1
                last = now
                yield "".join(buffer)
                buffer.clear()
                asked = clock()  # the page has drawn it: from here the model works again
        stats.generating += clock() - asked  # the work after the last piece (closing the turn)
        if buffer:
            stats.updates += 1
            yield "".join(buffer)
    finally:
        stats.finished = clock()
        close = getattr(pieces, "close", None)
        if close:
            close()
