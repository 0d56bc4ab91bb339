"""Reading a corpus: a .txt file, a folder of .txt/.jsonl files, or chat-format .jsonl.

Plain text trains as continuous text. A .jsonl line is one conversation,
{"messages": [{"role": "user"|"assistant", "content": ...}, ...]}, and is laid out with
turn markers exactly as ChatSession feeds a live chat, so the model learns to answer as
the bot and to end its own turn.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ChatbotError
from .tokenizers import Tokenizer, normalize

ROLES = {"user": "user", "assistant": "bot"}
CORPUS_SUFFIXES = (".txt", ".jsonl")


@dataclass
class Corpus:
    """Decoded documents in file order: plain strings, or conversations as (role, text) lists."""

    paths: list[Path]
    documents: list[str | list[tuple[str, str]]] = field(default_factory=list)
    sha256: str = ""

    def texts(self) -> list[str]:
        """Every piece of text, for training a tokenizer."""
        out: list[str] = []
        for doc in self.documents:
            out.extend([doc] if isinstance(doc, str) else [text for _, text in doc])
        return out

    def characters(self) -> int:
        return sum(len(t) for t in self.texts())

    def encode(self, tokenizer: Tokenizer) -> list[int]:
        """The whole corpus as one id stream; documents are separated by a newline or,
        for conversations, by their turn markers."""
        return self.encode_with_starts(tokenizer)[0]

    def encode_with_starts(self, tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
        """The id stream and the position where each document (conversation) begins."""
        ids: list[int] = []
        starts: list[int] = []
        for doc in self.documents:
            starts.append(len(ids))
            ids.extend(encode_document(tokenizer, doc))
        return ids, starts


def encode_document(tokenizer: Tokenizer, doc: str | list[tuple[str, str]]) -> list[int]:
    """A text ending in a newline, or a conversation with its turn markers."""
    if isinstance(doc, str):
        return tokenizer.encode(doc if doc.endswith("\n") else doc + "\n")
    return [i for role, text in doc for i in turn_ids(tokenizer, role, text)]


def turn_ids(tokenizer: Tokenizer, role: str, text: str) -> list[int]:
    """<|user|>text<|end|> or <|bot|>text<|end|>: the layout both training and chat use."""
    marker = tokenizer.user_id if role == "user" else tokenizer.bot_id
    return [marker, *tokenizer.encode(text), tokenizer.end_id]


def load_corpus(path: str | Path) -> Corpus:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in CORPUS_SUFFIXES)
        if not files:
            raise ChatbotError(f"{path}: no .txt or .jsonl files in this folder. "
                               f"Put your text in .txt files (or chat .jsonl) there.")
    elif path.is_file():
        files = [path]
    else:
        raise ChatbotError(f"{path}: no such file or folder. Pass --corpus a .txt file, a .jsonl "
                           f"chat file or a folder of them.")
    corpus = Corpus(paths=files)
    digest = hashlib.sha256()
    for file in files:
        raw = _read(file)
        digest.update(file.name.encode() + b"\0" + raw + b"\0")
        text = _decode(file, raw)
        if file.suffix == ".jsonl":
            corpus.documents.extend(_parse_jsonl(file, text))
        elif text.strip():
            corpus.documents.append(text)
    if not any(t.strip() for t in corpus.texts()):
        where = path if len(files) > 1 else files[0]
        raise ChatbotError(f"{where}: the corpus is empty (no text other than whitespace). "
                           f"Add some text to train on.")
    corpus.sha256 = digest.hexdigest()
    return corpus


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise ChatbotError(f"{file}: cannot read it ({exc.strerror}).") from None


def _decode(file: Path, raw: bytes) -> str:
    if b"\0" in raw:
        offset = raw.index(b"\0")
        raise ChatbotError(f"{file}: looks like a binary file (a NUL byte at byte offset {offset}); "
                           f"a corpus must be UTF-8 text.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ChatbotError(
            f"{file}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte offset {exc.start}). "
            f"Convert it to UTF-8, for example: iconv -f latin1 -t utf-8 '{file}' > fixed.txt"
        ) from None
    return normalize(text.removeprefix("\ufeff").replace("\r\n", "\n"))


def _parse_jsonl(file: Path, text: str) -> list[list[tuple[str, str]]]:
    conversations = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{file}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ChatbotError(f"{where}: not valid JSON ({exc.msg}). Each line must be one "
                               f'conversation: {{"messages": [{{"role": "user", "content": "hi"}}, ...]}}') from None
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not messages:
            raise ChatbotError(f'{where}: expected an object with a non-empty "messages" list.')
        turns = []
        for message in messages:
            role = message.get("role") if isinstance(message, dict) else None
            content = message.get("content") if isinstance(message, dict) else None
            if role == "system":
                continue
            if role not in ROLES or not isinstance(content, str):
                raise ChatbotError(f'{where}: each message needs "role" ("user" or "assistant") '
                                   f'and a string "content"; got {json.dumps(message)[:80]}.')
            turns.append((ROLES[role], content))
        if turns:
            conversations.append(turns)
    return conversations
