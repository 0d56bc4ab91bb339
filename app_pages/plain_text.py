"""Model output is plain text. Streamlit renders strings as Markdown (with LaTeX between `$`,
colour directives and links), so every character that Markdown could read as syntax is
backslash-escaped: a `$`, `*`, `#` or `<b>` that the model emits shows as itself."""

from __future__ import annotations

import re
import string
from typing import Iterable, Iterator

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
NBSP = "&#160;"  # a no-break space, written as a character reference: Markdown keeps it


def escape_markdown(text: str, before: str = "\n") -> str:
    """Markdown source that renders as exactly `text`.

    Every ASCII punctuation mark is backslash-escaped (CommonMark allows it for all of them).
    A space that opens a line or follows another space becomes a no-break space, so spaces
    neither collapse nor start a code block. Each line break stays a line break. `before` is
    the character shown just before `text` ("\\n" at the start), for text arriving in pieces.
    """
    text = _PUNCTUATION.sub(r"\\\1", text.replace("\t", "    "))
    out = []
    previous = before
    for ch in text:
        if ch == " " and previous in (" ", "\n"):
            out.append(NBSP)
        elif ch == "\n":
            out.append("  \n")
        else:
            out.append(ch)
        previous = ch
    return "".join(out)


def escape_stream(chunks: Iterable[str]) -> Iterator[str]:
    """escape_markdown for text arriving in pieces; the pieces join to the escaped whole."""
    before = "\n"
    for chunk in chunks:
        if chunk:
            yield escape_markdown(chunk, before)
            before = chunk[-1]
