"""Model output shown as plain text, and streamed at a bounded rate."""

import itertools
import string

import pytest

from app_pages.pacing import StreamStats, paced
from app_pages.plain_text import NBSP, escape_markdown, escape_stream

HOSTILE = "Literal $x$ and **b** and <b>bold</b>\n# not a heading\n    not code\n:red[no colour] [link](x) `tick` 1. item"


def unescape(source: str) -> str:
    """What CommonMark shows for our escaped source: backslash-escapes removed, hard breaks."""
    out, i = [], 0
    while i < len(source):
        if source[i] == "\\" and i + 1 < len(source):
            out.append(source[i + 1])
            i += 2
        elif source.startswith("  \n", i):
            out.append("\n")
            i += 3
        elif source.startswith(NBSP, i):
            out.append(" ")
            i += len(NBSP)
        else:
            out.append(source[i])
            i += 1
    return "".join(out)


def test_every_markdown_character_is_escaped():
    source = escape_markdown(HOSTILE)
    bare = source.replace(NBSP, " ")
    for i, ch in enumerate(bare):  # HOSTILE has no backslash: each one here escapes
        if ch in string.punctuation and ch != "\\":
            assert bare[i - 1] == "\\", bare[:i + 1]
    assert "\\$x\\$" in source and "\\*\\*b\\*\\*" in source and "\\<b\\>" in source
    assert f"\n{NBSP * 4}not code" in source  # cannot open an indented code block
    assert escape_markdown("a  b") == f"a {NBSP}b"  # spaces do not collapse
    assert unescape(source) == HOSTILE


def test_streamed_chunks_escape_to_the_same_text_as_the_whole():
    for cut in range(1, 12):
        chunks = [HOSTILE[i:i + cut] for i in range(0, len(HOSTILE), cut)]
        assert unescape("".join(escape_stream(chunks))) == HOSTILE
    # a chunk that continues a line keeps its ordinary space
    assert "".join(escape_stream(["a", " b"])) == "a b"
    assert "".join(escape_stream(["a ", " b"])) == f"a {NBSP}b"


def test_paced_groups_pieces_into_at_most_max_updates_per_second():
    ticks = itertools.count()
    clock = lambda: next(ticks) * 0.001  # noqa: E731  one piece every millisecond: 1,000/s
    pieces = (f"{i} " for i in range(1000))
    stats = StreamStats(started=0.0)
    chunks = list(paced(pieces, stats, max_updates=30, clock=clock))
    assert "".join(chunks) == "".join(f"{i} " for i in range(1000))  # nothing lost or reordered
    assert chunks[0] == "0 "  # the first piece goes out at once
    assert 25 <= len(chunks) <= 32  # about 30 updates for one second of pieces
    assert stats.updates == len(chunks)
    assert stats.time_to_first_token() == pytest.approx(0.001)  # one tick: the reader asking
    assert stats.finished is not None


def test_paced_closes_the_source_when_the_reader_stops():
    closed = []

    def source():
        try:
            yield from ("a", "b", "c")
        finally:
            closed.append(True)

    stream = paced(source(), StreamStats(started=0.0), clock=lambda: 0.0)
    assert next(stream) == "a"
    stream.close()
    assert closed == [True]


def test_tokens_per_second_counts_the_generation_not_the_waits_for_the_page():
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731

    def model():  # 10 pieces, 1 ms of work each
        for i in range(10):
            now[0] += 0.001
            yield f"{i}"

    stats = StreamStats(started=0.0)
    for _ in paced(model(), stats, max_updates=1e9, clock=clock):
        now[0] += 0.5  # the page takes half a second to draw each update
    assert stats.updates == 10
    assert stats.generating == pytest.approx(0.010)
    assert stats.tokens_per_second(10) == pytest.approx(1000)
