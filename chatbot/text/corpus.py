"""Reading a corpus: a .txt file, a folder of .txt/.jsonl files, or chat-format .jsonl.

Plain text trains as continuous text. A .jsonl line is one conversation,
{"messages": [{"role": "user"|"assistant", "content": ...}, ...]}, and is laid out with
turn markers exactly as ChatSession feeds a live chat, so the model learns to answer as
the bot and to end its own turn.

A corpus may be larger than memory, so nothing here holds it whole: `load_corpus` reads
every file once in pieces of about CHUNK_BYTES (hashing the bytes, checking they are UTF-8
text, parsing each chat line, counting characters), and `Corpus.pieces()` reads them back
in the same pieces whenever the text is needed. Pieces are cut after a newline, where no
token and no Unicode normalisation can span the cut, so encoding the pieces gives the ids
of encoding the whole (a line over 16 MB is cut after a space, where a SentencePiece token
could have spanned it).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Union

from ..errors import ChatbotError
from .tokenizers import Tokenizer, normalize

ROLES = {"user": "user", "assistant": "bot"}
CORPUS_SUFFIXES = (".txt", ".jsonl")
CHUNK_BYTES = 1 << 20  # bytes read and decoded at a time
LONG_LINE_BYTES = 1 << 24  # a text line this long is cut inside (after a space); a chat line is refused

Conversation = list[tuple[str, str]]
Piece = Union[str, Conversation]


@dataclass
class Corpus:
    """A checked corpus on disk: its files, their hash and size. The text stays on disk."""

    paths: list[Path]
    sha256: str = ""
    characters: int = 0  # characters of text (conversations: of their messages)
    documents: int = 0  # text files with text, plus conversations
    conversations: int = 0
    turns: int = 0  # messages in conversations
    _blank: set[Path] = field(default_factory=set, repr=False)  # text files of whitespace only

    @property
    def is_chat(self) -> bool:
        return self.conversations > 0

    def pieces(self) -> Iterator[tuple[bool, Piece]]:
        """(starts a document, piece) in file order. A text file is one document, read in
        newline-cut pieces, the last ending in a newline; a conversation is a whole piece.
        The bytes are hashed again on the way, so a corpus edited since load_corpus stops
        the reader after its last piece instead of passing for the one that was checked."""
        digest = hashlib.sha256()
        for file in self.paths:
            parts = _file_pieces(file, digest)
            if file.suffix == ".jsonl":
                yield from ((True, conversation) for conversation in parts)
            elif file in self._blank:
                for _ in parts:  # read for the hash only
                    pass
            else:
                first, held = True, None
                for text in parts:
                    if held is not None:
                        yield first, held
                        first = False
                    held = text
                yield first, held if held.endswith("\n") else held + "\n"
        if digest.hexdigest() != self.sha256:
            raise ChatbotError(f"{self.paths[0] if len(self.paths) == 1 else self.paths[0].parent}: "
                               f"the corpus changed while it was being read. Run again once it "
                               f"is no longer being written.")

    def texts(self) -> Iterator[str]:
        """Every piece of text (message contents, without turn markers), for a tokenizer."""
        for _, piece in self.pieces():
            if isinstance(piece, str):
                yield piece
            else:
                yield from (text for _, text in piece)

    def sample_lines(self, max_chars: int, seed: int = 0) -> Iterator[str]:
        """Non-blank lines, each kept with probability max_chars / characters (all of a
        small corpus): about max_chars of text spread over the whole corpus, the same on
        every call."""
        keep, rng = max_chars / max(1, self.characters), random.Random(seed)
        for text in self.texts():
            for line in text.split("\n"):
                if line.strip() and (keep >= 1 or rng.random() < keep):
                    yield line

    def encode_with_starts(self, tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
        """The id stream and where each document begins (in memory: for small corpora;
        chatbot/text/token_cache.py writes large ones to disk)."""
        ids: list[int] = []
        starts: list[int] = []
        for first, piece in self.pieces():
            if first:
                starts.append(len(ids))
            ids.extend(encode_piece(tokenizer, piece))
        return ids, starts

    def encode(self, tokenizer: Tokenizer) -> list[int]:
        return self.encode_with_starts(tokenizer)[0]


def characters(piece: Piece) -> int:
    """Characters of text in a piece (of a conversation: of its messages)."""
    return len(piece) if isinstance(piece, str) else sum(len(text) for _, text in piece)


def encode_piece(tokenizer: Tokenizer, piece: Piece) -> list[int]:
    """A piece of text, or a conversation with its turn markers."""
    if isinstance(piece, str):
        return tokenizer.encode(piece)
    return [i for role, text in piece for i in turn_ids(tokenizer, role, text)]


def turn_ids(tokenizer: Tokenizer, role: str, text: str) -> list[int]:
    """<|user|>text<|end|> or <|bot|>text<|end|>: the layout both training and chat use."""
    marker = tokenizer.user_id if role == "user" else tokenizer.bot_id
    return [marker, *tokenizer.encode(text), tokenizer.end_id]


def load_corpus(path: str | Path) -> Corpus:
    """Find the files and read each once: hash, check, count. Errors name the file, the
    byte offset or line, and the fix."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in CORPUS_SUFFIXES)
        if not files:
            raise ChatbotError(f"{path}: no .txt or .jsonl files in this folder. "
                               f"Put your text in .txt files (or chat .jsonl) there.")
    elif path.is_file():
        files = [path]
    elif path.exists():
        raise ChatbotError(f"{path}: not a regular file (a device, pipe or socket). Pass --corpus "
                           f"a .txt file, a .jsonl chat file or a folder of them.")
    else:
        raise ChatbotError(f"{path}: no such file or folder. Pass --corpus a .txt file, a .jsonl "
                           f"chat file or a folder of them.")
    corpus = Corpus(paths=files)
    digest, has_text = hashlib.sha256(), False
    for file in files:
        if file.suffix == ".jsonl":
            for conversation in _file_pieces(file, digest):
                corpus.documents += 1
                corpus.conversations += 1
                corpus.turns += len(conversation)
                corpus.characters += characters(conversation)
                has_text = has_text or any(text.strip() for _, text in conversation)
        else:
            blank = True
            for text in _file_pieces(file, digest):
                corpus.characters += len(text)
                blank = blank and text.isspace()
            if blank:
                corpus._blank.add(file)
            else:
                corpus.documents += 1
            has_text = has_text or not blank
    if not has_text:
        where = path if len(files) > 1 else files[0]
        raise ChatbotError(f"{where}: the corpus is empty (no text other than whitespace). "
                           f"Add some text to train on.")
    corpus.sha256 = digest.hexdigest()
    return corpus


def _file_pieces(file: Path, digest) -> Iterator[Piece]:
    """A chat file's conversations or a text file's newline-cut texts. `digest` is fed the
    file's share of the corpus's sha256 (name, bytes, separator), so read every piece."""
    digest.update(file.name.encode() + b"\0")
    yield from _conversations(file, digest) if file.suffix == ".jsonl" else _texts(file, digest)
    digest.update(b"\0")


def _segments(file: Path, digest, cut_long_lines: bool = True) -> Iterator[tuple[int, bytes]]:
    """(byte offset, bytes) of the file in pieces of about CHUNK_BYTES that end after a
    newline (the last may not). A line over LONG_LINE_BYTES is cut after its last space
    (text) or refused (chat). `digest` is fed every byte. A NUL byte is looked for in each
    block as it is read, so a binary file is called binary even where its first bytes are
    also not UTF-8."""
    try:
        with open(file, "rb") as f:
            carry, offset = b"", 0
            while block := f.read(CHUNK_BYTES):
                if (nul := block.find(b"\0")) >= 0:
                    raise ChatbotError(f"{file}: looks like a binary file (a NUL byte at byte offset "
                                       f"{offset + len(carry) + nul}); a corpus must be UTF-8 text.")
                digest.update(block)
                data = carry + block
                cut = data.rfind(b"\n") + 1
                if not cut and len(data) >= LONG_LINE_BYTES:
                    if not cut_long_lines:
                        raise ChatbotError(f"{file}: a line starting at byte offset {offset} is over "
                                           f"{LONG_LINE_BYTES >> 20} MB; each line must be one "
                                           f"conversation.")
                    cut = _inside_line_cut(data)
                if cut:
                    yield offset, data[:cut]
                    offset += cut
                carry = data[cut:]
            if carry:
                yield offset, carry
    except OSError as exc:
        raise ChatbotError(f"{file}: cannot read it ({exc.strerror}).") from None


def _inside_line_cut(data: bytes) -> int:
    """After the last space (nothing composes with a space), else before the last byte that
    starts a UTF-8 character (and does not split a CRLF)."""
    cut = data.rfind(b" ") + 1
    if cut:
        return cut
    cut = len(data) - 1
    while cut > 0 and (data[cut] & 0xC0 == 0x80 or data[cut - 1] == 0x0D):
        cut -= 1
    return cut or len(data)  # not text at all: decoding it names the bad byte


def _texts(file: Path, digest, cut_long_lines: bool = True) -> Iterator[str]:
    """Normalised text pieces; bytes that are not UTF-8 stop with where they are."""
    for offset, raw in _segments(file, digest, cut_long_lines):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ChatbotError(
                f"{file}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte offset "
                f"{offset + exc.start}). Convert it to UTF-8, for example: "
                f"iconv -f latin1 -t utf-8 '{file}' > fixed.txt") from None
        if offset == 0:
            text = text.removeprefix("\ufeff")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        yield normalize(text)


def _conversations(file: Path, digest) -> Iterator[Conversation]:
    """The conversation on each chat line; system messages are dropped."""
    lineno = 0
    for text in _texts(file, digest, cut_long_lines=False):
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        for line in lines:
            lineno += 1
            if line.strip():
                turns = _parse_conversation(f"{file}:{lineno}", line)
                if turns:
                    yield turns


def _parse_conversation(where: str, line: str) -> Conversation:
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
    return turns
