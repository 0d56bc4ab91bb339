"""Model output is plain text. Streamlit renders strings as Markdown (with LaTeX between `$`,
colour directives and links), so every character that Markdown could read as syntax is
backslash-escaped: a `$`, `*`, `#` or `<b>` that the model emits shows as itself."""

from __future__ import annotations

import re
import string
from typing import Iterable, Iterator

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_LEADING_SPACES = re.compile(r"^ +")
NBSP = "\u00a0"


def escape_markdown(text: str, at_line_start: bool = True) -> str:
    """Markdown source that renders as exactly `text`: every ASCII punctuation mark is escaped
    (CommonMark allows it for all of them), spaces that open a line become no-break spaces so
    they cannot start a code block, and each line break stays a line break.

    `at_line_start=False` says the text continues a line (a streamed chunk), so its first
    spaces are ordinary."""
    lines = _PUNCTUATION.sub(r"\\\1", text.replace("\t", "    ")).split("\n")
    for i, line in enumerate(lines):
        if i > 0 or at_line_start:
            lines[i] = _LEADING_SPACES.sub(lambda m: NBSP * len(m.group(0)), line)
    return "  \n".join(lines)


def escape_stream(chunks: Iterable[str]) -> Iterator[str]:
    """escape_markdown for text arriving in pieces; the pieces join to the escaped whole."""
    at_line_start = True
    for chunk in chunks:
        if chunk:
            yield escape_markdown(chunk, at_line_start)
            at_line_start = chunk.endswith("\n")
