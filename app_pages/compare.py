"""Compare settings side by side: the chat page's sidebar choice of settings, and the columns
that stream one message's replies under each at once (ChatSession.compare) with a button to
keep one (ChatSession.keep). See docs/compare.md."""

from __future__ import annotations

import time
from typing import Callable, Iterator

import streamlit as st

from app_pages.plain_text import escape_markdown
from chatbot.chat.sampling import PRESETS, SETTINGS, SamplingConfig, preset
from chatbot.chat.session import MAX_COMPARED, ChatSession, interleave

YOURS = "yours"  # the sidebar's own settings, as one of the compared columns
CHOICES = (YOURS, *PRESETS)
DEFAULT = [YOURS, "precise", "creative"]
MAX_UPDATES = 30.0  # the columns are redrawn at most this often a second


def compare_choices(base: SamplingConfig) -> list[tuple[str, SamplingConfig]] | None:
    """The sidebar's toggle and the settings to compare (drawn where it is called); the named
    settings to answer the next message under, or None when comparing is off."""
    on = st.toggle("Compare settings side by side", key="compare_on",
                   help="answer the next message under several settings at once, from the same "
                        "memory, and keep one reply; the toggle turns off once you keep one")
    names = st.multiselect("Settings to compare", CHOICES, default=DEFAULT, key="compare_names",
                           max_selections=MAX_COMPARED, disabled=not on, format_func=describe)
    if not on:
        return None
    return [(name, base if name == YOURS else preset(name, base)) for name in names]


def describe(name: str) -> str:
    """A choice's label: its name and what it sets."""
    if name == YOURS:
        return "yours (the settings above)"
    return f"{name} ({', '.join(f'{key} {value:g}' for key, value in PRESETS[name].items())})"


def settings_line(cfg: SamplingConfig) -> str:
    """The settings of one column, those that differ from the defaults, plus the seed."""
    defaults = SamplingConfig()
    changed = [f"{key} {getattr(cfg, key):g}" for key in SETTINGS
               if key != "max_new_tokens" and getattr(cfg, key) != getattr(defaults, key)]
    seed = f"seed {cfg.seed}" if cfg.seed is not None else "no fixed seed"
    return " · ".join(changed + [seed]) if changed else f"the defaults · {seed}"


def show_comparison(chat: ChatSession, names: list[str], streams: list[Iterator[str]] | None,
                    on_keep: Callable[[int], None], on_discard: Callable[[], None]) -> None:
    """The compared replies in columns: streamed at once when `streams` are given (each piece
    as plain text, the columns redrawn at most MAX_UPDATES times a second), then each with a
    Keep button. Closing the streams, however this run ends, leaves each reply exactly its
    tokens so far (a click during streaming keeps what was shown)."""
    candidates = chat.comparing.candidates
    columns = st.columns(len(candidates))
    boxes = []
    for column, name, candidate in zip(columns, names, candidates):
        with column.chat_message("assistant"):
            st.caption(escape_markdown(f"{name}: {settings_line(candidate.sampling)}"))
            boxes.append(st.empty())
    texts = [c.reply.text for c in candidates]
    if streams is not None:
        texts = stream_columns(streams, boxes)
    for box, text in zip(boxes, texts):
        box.markdown(escape_markdown(text) if text else "*(empty reply)*")
    for i, (column, name, candidate) in enumerate(zip(columns, names, candidates)):
        ended = "" if candidate.reply.ended else " · stopped before the bot ended its turn"
        column.caption(f"{len(candidate.reply.ids)} tokens{ended}")
        column.button(f"Keep this reply ({escape_markdown(name)})", key=f"keep-{i}", on_click=on_keep,
                      args=(i,), type="primary", width="stretch")
    st.button("Discard them all (and the message)", key="discard-compared", on_click=on_discard)
    st.caption("Keep one reply to go on: the chat continues from its memory, under its settings.")


def stream_columns(streams: list[Iterator[str]], boxes) -> list[str]:
    """Read every stream a piece at a time in turn (with the engine, their tokens are chosen
    in one batch), drawing each column's text as plain text; returns the texts."""
    texts = [""] * len(streams)
    drawn, changed = 0.0, set()
    try:
        for i, piece in interleave(streams):
            texts[i] += piece
            changed.add(i)
            now = time.perf_counter()
            if now - drawn >= 1 / MAX_UPDATES:
                for j in changed:
                    boxes[j].markdown(escape_markdown(texts[j]))
                changed.clear()
                drawn = now
    finally:  # also after a click or Stop: every reply holds exactly the tokens read
        for stream in streams:
            stream.close()
    return texts


def adopt(cfg: SamplingConfig) -> None:
    """Put a kept column's settings into the sidebar's widgets (call before they are drawn,
    from a button's callback), so the chat goes on under them; comparing turns off."""
    state = st.session_state
    for key in SETTINGS:
        state[key] = getattr(cfg, key)
    state.use_seed = cfg.seed is not None
    if cfg.seed is not None:
        state.seed = cfg.seed
    state.compare_on = False


def compared_line(stats: dict) -> str:
    """The line under a kept reply: which of how many compared replies it was."""
    compared = stats.get("compared")
    if not isinstance(compared, dict) or not isinstance(compared.get("kept"), int):
        return ""
    kept, names = compared["kept"], compared.get("names") or []
    name = f" ({names[kept]})" if isinstance(names, list) and 0 <= kept < len(names) else ""
    return f"Kept reply {kept + 1}{name} of {len(compared.get('settings') or [])} compared side by side"
