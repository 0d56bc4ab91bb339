"""How usable a model's replies are, in plain words: it answers messages taken from its own
corpus, and the share of the words it writes that are words of the corpus says whether it
writes language yet or still makes words up. train_lm.py samples this way at every
evaluation (OUT/samples.jsonl) and judges the saved model at the end (OUT/quality.json); the
Train page shows both.

The verdict reads the share against the corpus's own ceiling: the share of the words of its
last 10% (real text, held out) that occur in the rest. A small corpus does not hold every
real word: in 191 KB of English and Korean chat, where Korean words carry their particles,
real held-out text scores 77%; in 200 KB of Shakespeare, 91% (bench/README.md, "Training on
the Train page"). A model is "ready" at 90% of its corpus's ceiling, not at 90% flat, which
no model could reach on the first.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..atomic import atomic_write
from ..errors import ChatbotError
from ..lm.model import LanguageModel
from ..text.corpus import Corpus
from ..text.tokenizers import Tokenizer
from .sampling import SamplingConfig
from .session import ChatSession

SAMPLES_FILE = "samples.jsonl"
QUALITY_FILE = "quality.json"
WORD = re.compile(r"[^\W\d_]+")  # a run of letters in any script (digits and markup are not words)
WORDS_READ_CHARS = 20_000_000  # the corpus's words are read from (at most) its first 20M characters
PROMPTS = 8
SAMPLING = SamplingConfig(max_new_tokens=160, seed=0)  # the Chat page's defaults, shorter
USABLE, LEARNING = 0.9, 0.6  # fractions of the corpus's ceiling at which the verdict changes
HELD_OUT = 0.1  # the last tenth of the text read gives the ceiling


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


@dataclass
class CorpusSample:
    """What judging needs from a corpus: its words and a few messages to answer."""

    words: set[str]
    prompts: list[str]  # user messages of a chat corpus; the start of lines of plain text
    is_chat: bool
    ceiling: float = 1.0  # share of the held-out last tenth's words found in the rest (module doc);
    # 1.0 for a text too short to tell

    @classmethod
    def read(cls, corpus: Corpus, count: int = PROMPTS) -> "CorpusSample":
        # The words of the first 90% of what is read, then those of the held-out rest.
        cut = (1 - HELD_OUT) * min(corpus.characters, WORDS_READ_CHARS)
        vocabulary: set[str] = set()
        held: list[str] = []
        seen = 0
        for text in _bounded(corpus.texts(), WORDS_READ_CHARS):
            k = max(0, min(len(text), int(cut - seen)))  # where this text crosses the cut
            if 0 < k < len(text):  # (a plain-text corpus is one text) at a space, not mid-word
                k = max(text.rfind(" ", 0, k), 0)
            vocabulary.update(words(text[:k]))
            held.extend(words(text[k:]))
            seen += len(text)
        share_known = sum(w in vocabulary for w in held) / len(held) if len(held) >= 20 else 1.0
        vocabulary.update(held)
        candidates = []
        for _, piece in itertools.islice(corpus.pieces(), 20_000):
            if isinstance(piece, list):  # a conversation: its first user message
                first = next((text for role, text in piece if role == "user" and text.strip()), None)
                if first and len(first) <= 200:
                    candidates.append(first)
            else:  # plain text: the first few words of each line
                for line in piece.split("\n"):
                    if len(words(line)) >= 4:
                        candidates.append(" ".join(line.split()[:4]) + " ")
            if len(candidates) >= 20_000:
                break
        step = max(1, len(candidates) // count)
        return cls(vocabulary, candidates[::step][:count], corpus.is_chat, share_known)

    def share(self, texts: list[str]) -> tuple[float | None, int]:
        """(share of the words in `texts` that are corpus words, or None with no words; words)."""
        found = [w for text in texts for w in words(text)]
        if not found:
            return None, 0
        return sum(w in self.words for w in found) / len(found), len(found)


def _bounded(texts, max_chars: int):
    seen = 0
    for text in texts:
        yield text
        seen += len(text)
        if seen >= max_chars:
            return


def reply(model: LanguageModel, tokenizer: Tokenizer, prompt: str, is_chat: bool, seed: int = 0) -> str:
    """One reply (chat) or continuation (plain text) as the Chat page would sample it."""
    was_training = model.training
    try:
        session = ChatSession(model, tokenizer, SAMPLING.with_(seed=seed))
        pieces = session.send(prompt) if is_chat else session.complete(prompt)
        return "".join(pieces).strip()
    except (ChatbotError, RuntimeError) as exc:
        return f"(no sample: {exc})"
    finally:
        model.train(was_training)


@dataclass
class Quality:
    corpus_words: float | None  # share of the generated words that are words of the corpus
    words: int  # generated words counted
    val_nats_per_char: float
    val_bits_per_char: float
    steps: int
    verdict: str
    samples: list[dict] = field(default_factory=list)  # {"prompt", "reply"}
    reason: str = ""  # why training ended: finished, time budget reached, stopped

    def to_json(self) -> dict:
        return asdict(self)


def verdict(share: float | None, is_chat: bool, ceiling: float = 1.0) -> str:
    """In plain words, from the share of corpus words and the corpus's ceiling (module doc)."""
    what = "replies" if is_chat else "its text"
    against = "" if ceiling >= 0.995 else f" (your corpus's own unseen text: {ceiling:.0%})"
    if share is None or share < LEARNING * ceiling:
        return (f"still learning: {what} will be mostly made-up words — train longer or pick a "
                f"smaller size")
    if share < USABLE * ceiling:
        return (f"getting there: {share:.0%} of the words in {what} are words of your corpus"
                f"{against} — more training will make it better")
    return (f"ready to chat: {share:.0%} of the words in {what} are words of your corpus{against}"
            if is_chat else f"ready: {share:.0%} of the words it writes are words of your corpus{against}")


def ready(verdict_text: str) -> bool:
    return verdict_text.startswith("ready")


def judge(model: LanguageModel, tokenizer: Tokenizer, sample: CorpusSample, metrics: dict) -> Quality:
    """Answer every prompt (seeds 0, 1, ...) and give the verdict on what came out."""
    samples = [{"prompt": p, "reply": reply(model, tokenizer, p, sample.is_chat, seed=i)}
               for i, p in enumerate(sample.prompts)]
    share, count = sample.share([s["reply"] for s in samples])
    return Quality(share, count, metrics["val_nats_per_char"], metrics["val_bits_per_char"],
                   metrics.get("steps", 0), verdict(share, sample.is_chat, sample.ceiling), samples)


class SampleLog:
    """At each evaluation, a reply to the next prompt from the corpus, appended (one JSON line,
    flushed) to OUT/samples.jsonl with the step, seconds, validation and corpus-word share."""

    def __init__(self, out: Path, sample: CorpusSample, truncate_after: int | None = None):
        self.path, self.sample, self.count = Path(out) / SAMPLES_FILE, sample, 0
        if truncate_after is not None and self.path.exists():  # a resume: drop what came after
            keep = [line for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines()
                    if _step(line) is not None and _step(line) <= truncate_after]
            atomic_write(self.path, ("\n".join(keep) + "\n" if keep else "").encode())
        elif truncate_after is None:
            self.path.unlink(missing_ok=True)

    def add(self, model: LanguageModel, tokenizer: Tokenizer, metrics: dict) -> dict:
        prompt = self.sample.prompts[self.count % len(self.sample.prompts)] if self.sample.prompts else "\n"
        self.count += 1
        with torch.random.fork_rng(devices=[]):
            text = reply(model, tokenizer, prompt, self.sample.is_chat)
        share, _ = self.sample.share([text])
        record = {"step": metrics["steps"], "seconds": metrics.get("train_seconds", 0.0),
                  "val_nats_per_char": metrics["val_nats_per_char"], "prompt": prompt, "reply": text,
                  "corpus_words": share}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return record


def _step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def write_quality(out: Path, quality: Quality) -> None:
    atomic_write(Path(out) / QUALITY_FILE, json.dumps(quality.to_json(), ensure_ascii=False, indent=1).encode())


def read_quality(out: Path) -> dict | None:
    try:
        return json.loads((Path(out) / QUALITY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_samples(out: Path) -> list[dict]:
    try:
        lines = (Path(out) / SAMPLES_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return records
