"""Which units of a layer track something you can name in the text.

Karpathy, Johnson and Fei-Fei ("Visualizing and Understanding Recurrent Networks", 2015)
found LSTM cells that follow quotes, brackets and the position in a line; LSTMVis (Strobelt
et al.) lets a reader find units by the pattern they follow over a stretch of text. Here the
patterns are simple text features computed from the text itself (inside quotes, inside
brackets, position in the line and in the word, whose turn it is, at a turn marker, Korean or
not), and each unit is scored by the Pearson correlation of its hidden state h_t with each
feature over the text. The units that follow a feature best are the ones worth showing a
learner first; a unit whose cell has run off to ±300 and stays there follows nothing, and its
correlation says so.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import numpy as np

from ..text.tokenizers import BOT_ID, END_ID, USER_ID

# feature name -> what it is, in plain words (the page shows these), and a short name
SHORT = {"quote": "quotes", "bracket": "brackets", "line": "line position", "word": "word position",
         "bot": "bot's turn", "marker": "turn marker", "korean": "Korean"}
FEATURES = {
    "quote": 'inside "quotes"',
    "bracket": "inside (brackets)",
    "line": "position in the line",
    "word": "position in the word",
    "bot": "the bot's turn (vs. yours)",
    "marker": "a turn marker (▸ ◂ ¶)",
    "korean": "writing Korean (vs. other letters)",
}
MARKERS = {USER_ID: "user", BOT_ID: "bot", END_ID: "end"}
OPEN_QUOTES, CLOSE_QUOTES = "“«", "”»"
OPEN_BRACKETS, CLOSE_BRACKETS = "([{", ")]}"


def pieces(tokenizer, ids: list[int]) -> list[str]:
    """The characters each token completes, in order; a turn marker is "" (it has no text).
    A byte piece that ends in the middle of a character completes nothing (""); the token
    that finishes the character gets it. Joined, the pieces are the text."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return [decoder.decode(tokenizer.token_bytes(i)) for i in ids]


MARKS = {"user": "▸", "bot": "◂", "end": "¶"}


def token_labels(texts: list[str], ids: list[int], space: str = " ") -> list[str]:
    """One short label per token, to draw along the text: its characters, ▸ ◂ ¶ for the turn
    markers, ⏎ for a line break, `space` for a space, · for a byte piece that completes no
    character yet, � for any other character that does not print."""
    labels = []
    for text, token in zip(texts, ids):
        if token in MARKERS:
            labels.append(MARKS[MARKERS[token]])
            continue
        text = text.replace("\n", "⏎").replace("\t", "⇥").replace(" ", space)
        labels.append("".join(ch if ch.isprintable() else "�" for ch in text) or "·")
    return labels


def is_hangul(ch: str) -> bool:
    return "\uac00" <= ch <= "\ud7a3" or "\u1100" <= ch <= "\u11ff" or "\u3130" <= ch <= "\u318f"


def text_features(texts: list[str], ids: list[int]) -> dict[str, np.ndarray]:
    """Each feature's value after each token (the state h_t has read the token), as float
    arrays of len(ids). `texts` are the tokens' pieces (see pieces()). A turn marker ends a
    line and a word; ▸ (user) and ◂ (bot) start a turn, ¶ ends it."""
    quote = bracket = line = word = 0
    turn, korean = "", 0.0
    out: dict[str, list[float]] = {name: [] for name in FEATURES}
    for text, token in zip(texts, ids):
        marker = MARKERS.get(token)
        if marker:
            line = word = 0
            turn = "" if marker == "end" else marker
        for ch in text:
            if ch == '"':
                quote = 1 - quote
            elif ch in OPEN_QUOTES:
                quote = 1
            elif ch in CLOSE_QUOTES:
                quote = 0
            elif ch in OPEN_BRACKETS:
                bracket += 1
            elif ch in CLOSE_BRACKETS:
                bracket = max(0, bracket - 1)
            line = 0 if ch == "\n" else line + 1
            word = 0 if ch.isspace() else word + 1
            if ch.isalpha():
                korean = float(is_hangul(ch))
        for name, value in (("quote", quote), ("bracket", bracket > 0), ("line", line), ("word", word),
                            ("bot", turn == "bot"), ("marker", marker is not None), ("korean", korean)):
            out[name].append(float(value))
    return {name: np.array(values, dtype=np.float64) for name, values in out.items()}


def usable(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The features a correlation can say something about: those that vary over the text.
    A position counts only if it starts again at least twice (in one long line the position
    in the line is just time, which any slowly drifting unit follows)."""
    keep = {}
    for name, values in features.items():
        if values.std() == 0:
            continue
        if name in ("line", "word") and np.count_nonzero(np.diff(values) < 0) < 2:
            continue
        keep[name] = values
    return keep


def correlations(values: np.ndarray, features: dict[str, np.ndarray]) -> np.ndarray:
    """Pearson r of every unit (columns of values, (steps, units)) with every feature:
    (features, units). A unit that does not change over the text correlates with nothing (0)."""
    x = values.astype(np.float64) - values.mean(axis=0)
    f = np.stack(list(features.values())) if features else np.zeros((0, len(values)))
    f = f - f.mean(axis=1, keepdims=True)
    norms = np.outer(np.linalg.norm(f, axis=1), np.linalg.norm(x, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (f @ x) / norms
    return np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0)


@dataclass(frozen=True)
class Tracker:
    unit: int
    feature: str  # a key of FEATURES
    r: float  # Pearson correlation of the unit's h_t with the feature over the text

    @property
    def strength(self) -> str:
        size = abs(self.r)
        return "strong" if size >= 0.7 else "clear" if size >= 0.5 else "weak" if size >= 0.3 else "none"


MIN_R = 0.3  # below this |r| a unit is not said to follow a feature


def pick_units(r: np.ndarray, names: list[str], count: int) -> list[Tracker]:
    """`count` different units, each with the feature it follows. In rounds, each feature that
    some free unit follows with |r| >= MIN_R (features in order of their best |r|) takes its
    best free unit, so every such feature is shown before any is shown twice; when none is
    left, the strongest remaining (unit, feature) pairs by |r| fill up."""
    if r.size == 0:
        return []
    size = np.abs(r)
    features = sorted(range(len(names)), key=lambda k: -size[k].max())
    picked: list[Tracker] = []
    free = np.ones(r.shape[1], dtype=bool)

    def take(feature: int, unit: int):
        picked.append(Tracker(int(unit), names[feature], float(r[feature, unit])))
        free[unit] = False

    while len(picked) < count:
        progress = False
        for feature in features:
            if len(picked) < count and free.any():
                unit = int(np.argmax(np.where(free, size[feature], -1.0)))
                if free[unit] and size[feature, unit] >= MIN_R:
                    take(feature, unit)
                    progress = True
        if not progress:
            break
    while len(picked) < count and free.any():  # nothing follows a feature: the strongest of the rest
        feature, unit = np.unravel_index(np.argmax(np.where(free[None, :], size, -1.0)), r.shape)
        take(feature, unit)
    return picked


def track_units(values: np.ndarray, texts: list[str], ids: list[int], count: int) -> list[Tracker]:
    """The `count` units of a layer (values: its h_t, (steps, units)) that follow a text feature best."""
    features = usable(text_features(texts, ids))
    return pick_units(correlations(values, features), list(features), count)
