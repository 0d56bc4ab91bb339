"""Character and SentencePiece (BPE / unigram) tokenizers with turn markers.

Both tokenizers map every id to the exact UTF-8 bytes it stands for, so one byte-level
stream decoder serves both and never emits half a character, and any string encodes:
unseen characters become the unknown token (char) or UTF-8 byte pieces (SentencePiece).
Text is NFC-normalised on the way in.
"""

from __future__ import annotations

import codecs
import io
import itertools
import json
import re
import unicodedata
from pathlib import Path
from typing import Iterable

import numpy as np

from ..atomic import atomic_write
from ..errors import ChatbotError

UNK = "<|unk|>"
USER = "<|user|>"
BOT = "<|bot|>"
END = "<|end|>"
SPECIALS = (UNK, USER, BOT, END)  # ids 0..3 in every tokenizer
UNK_ID, USER_ID, BOT_ID, END_ID = range(4)
KINDS = ("char", "bpe", "unigram")
_REPLACEMENT = "\ufffd".encode()
SENTENCEPIECE_SEED = 0


def normalize(text: str) -> str:
    """NFC, so a composed and a decomposed 'é' or Hangul syllable are the same tokens."""
    return unicodedata.normalize("NFC", text)


class Tokenizer:
    """Shared behaviour: ids 0..3 are the specials; every id has a byte string."""

    kind: str
    filename: str

    def __init__(self, token_bytes: list[bytes]):
        self._bytes = token_bytes

    @property
    def vocab_size(self) -> int:
        return len(self._bytes)

    user_id, bot_id, end_id, unk_id = USER_ID, BOT_ID, END_ID, UNK_ID

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids; turn markers are invisible, broken bytes become U+FFFD."""
        return b"".join(self._bytes[i] for i in ids).decode("utf-8", errors="replace")

    def char_length(self, ids: list[int]) -> int:
        """Characters these ids spell, each turn marker counting as one: the unit of nats/char."""
        specials = sum(1 for i in ids if i in (USER_ID, BOT_ID, END_ID))
        return len(self.decode(ids)) + specials

    def stream_decoder(self) -> "StreamDecoder":
        return StreamDecoder(self)

    def describe(self) -> dict:
        return {"kind": self.kind, "vocab_size": self.vocab_size, "file": self.filename}

    def save(self, folder: Path) -> Path:
        raise NotImplementedError

    def identity(self) -> bytes:
        """Bytes that determine every encoding this tokenizer makes (for cache keys)."""
        raise NotImplementedError


class StreamDecoder:
    """Turns ids into text one at a time, holding back bytes until a character is whole."""

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self._tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


class CharTokenizer(Tokenizer):
    """One token per Unicode character seen in training; anything else is <|unk|>."""

    kind = "char"
    filename = "tokenizer.json"

    def __init__(self, chars: list[str]):
        self.chars = chars
        self._index = {ch: i + len(SPECIALS) for i, ch in enumerate(chars)}
        super().__init__([_REPLACEMENT, b"", b"", b""] + [ch.encode() for ch in chars])

    @classmethod
    def train(cls, texts: Iterable[str]) -> "CharTokenizer":
        seen: set[str] = set()
        for text in texts:
            text = normalize(text)
            if text.isascii():  # counting bytes is 20x faster than a set of a long string
                counts = np.bincount(np.frombuffer(text.encode("ascii"), dtype=np.uint8), minlength=128)
                seen.update(map(chr, np.flatnonzero(counts).tolist()))
            else:
                seen.update(text)
        return cls(sorted(seen))

    def encode(self, text: str) -> list[int]:
        index = self._index
        return [index.get(ch, UNK_ID) for ch in normalize(text)]

    def identity(self) -> bytes:
        return json.dumps({"kind": "char", "chars": self.chars}, ensure_ascii=False).encode()

    def save(self, folder: Path) -> Path:
        data = {"kind": "char", "specials": list(SPECIALS), "chars": self.chars}
        return atomic_write(Path(folder) / self.filename, json.dumps(data, ensure_ascii=False).encode())

    @classmethod
    def load(cls, path: Path) -> "CharTokenizer":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            chars = data["chars"]
            ok = (data.get("kind") == "char" and data.get("specials") == list(SPECIALS)
                  and isinstance(chars, list)
                  and all(isinstance(c, str) and len(c) == 1 for c in chars)
                  and len(set(chars)) == len(chars))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError,
                RecursionError) as exc:
            raise ChatbotError(f"{path}: not a readable character tokenizer file ({exc}).") from None
        if not ok:
            raise ChatbotError(f"{path}: not a valid character tokenizer file (it must list "
                               f"distinct single characters and the specials {list(SPECIALS)}).")
        return cls(chars)


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece BPE or unigram with byte fallback; the turn markers are control symbols,
    so a user typing '<|end|>' gets ordinary text, never a real turn marker."""

    filename = "tokenizer.model"

    def __init__(self, model_proto: bytes, kind: str):
        import sentencepiece as spm

        self.kind = kind
        self.model_proto = model_proto
        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(model_proto)
        except Exception as exc:  # sentencepiece raises RuntimeError/OSError variants
            raise ChatbotError(f"not a valid SentencePiece model ({exc}).") from None
        self._sp = sp
        table = []
        for i in range(sp.get_piece_size()):
            piece = sp.id_to_piece(i)
            if i == UNK_ID:
                table.append(_REPLACEMENT)
            elif sp.is_control(i):
                table.append(b"")
            elif sp.is_byte(i):
                table.append(bytes([int(piece[3:5], 16)]))
            else:
                table.append(piece.replace("\u2581", " ").encode())
        if [sp.id_to_piece(i) for i in range(len(SPECIALS))] != ["<unk>", USER, BOT, END]:
            raise ChatbotError("SentencePiece model does not have lstm-chat's turn markers at ids 1-3; "
                               "train the tokenizer with train_lm.py.")
        self._byte_ids = {}
        for i in range(sp.get_piece_size()):
            if sp.is_byte(i):
                self._byte_ids[table[i][0]] = i
        if len(self._byte_ids) != 256:
            raise ChatbotError("SentencePiece model lacks byte fallback (256 byte pieces); "
                               "train the tokenizer with train_lm.py.")
        self._meta_space = [self._byte_ids[b] for b in "\u2581".encode()]
        super().__init__(table)

    @classmethod
    def train(cls, texts: Iterable[str], kind: str, vocab_size: int) -> "SentencePieceTokenizer":
        import sentencepiece as spm

        lines = (line for text in texts for line in normalize(text).split("\n") if line.strip())
        first = next(lines, None)  # a generator: a large corpus is never listed in memory
        if first is None:
            raise ChatbotError("the corpus has no text to train a SentencePiece tokenizer on.")
        buf = io.BytesIO()
        spm.set_random_generator_seed(SENTENCEPIECE_SEED)  # the same sample, the same model
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=itertools.chain([first], lines), model_writer=buf, model_type=kind,
                vocab_size=vocab_size, character_coverage=1.0, byte_fallback=True,
                normalization_rule_name="identity", remove_extra_whitespaces=False,
                add_dummy_prefix=False, unk_id=UNK_ID, bos_id=-1, eos_id=-1, pad_id=-1,
                control_symbols=[USER, BOT, END], hard_vocab_limit=False,
                input_sentence_size=2_000_000, shuffle_input_sentence=True,
                max_sentence_length=1 << 16, minloglevel=2, num_threads=2)
        except RuntimeError as exc:
            raise ChatbotError(_explain_sentencepiece_error(str(exc), vocab_size)) from None
        return cls(buf.getvalue(), kind)

    def encode(self, text: str) -> list[int]:
        # SentencePiece writes spaces as U+2581, so a literal U+2581 is sent as its bytes
        # to keep the round trip exact.
        ids: list[int] = []
        for n, part in enumerate(normalize(text).split("\u2581")):
            if n:
                ids.extend(self._meta_space)
            if part:
                ids.extend(self._sp.encode(part))
        return ids

    def identity(self) -> bytes:
        return self.kind.encode() + b"\0" + self.model_proto

    def save(self, folder: Path) -> Path:
        return atomic_write(Path(folder) / self.filename, self.model_proto)

    @classmethod
    def load(cls, path: Path, kind: str) -> "SentencePieceTokenizer":
        try:
            proto = Path(path).read_bytes()
        except OSError as exc:
            raise ChatbotError(f"{path}: cannot read the tokenizer ({exc.strerror}).") from None
        try:
            return cls(proto, kind)
        except ChatbotError as exc:
            raise ChatbotError(f"{path}: {exc}") from None


def _explain_sentencepiece_error(message: str, vocab_size: int) -> str:
    match = re.search(r"required_chars\D*(\d+) vs (\d+)", message)
    if match:
        needed = match.group(2)
        return (f"--vocab-size {vocab_size} is too small for this corpus: SentencePiece needs at "
                f"least {needed} (256 byte pieces, the turn markers and every distinct character). "
                f"Use --vocab-size {needed} or more, or --tokenizer char.")
    if "Vocabulary size too high" in message or "vocab_size" in message:
        return (f"--vocab-size {vocab_size} is too large for this corpus ({message.strip()}). "
                f"Use a smaller --vocab-size, or more text.")
    return f"SentencePiece could not train on this corpus: {message.strip()}"


# What a SentencePiece vocabulary must hold before it learns any piece (byte_fallback with
# character_coverage 1.0): the 256 byte pieces, <unk>, the three turn markers, every distinct character.
SENTENCEPIECE_FIXED = 256 + 1 + 3
FITTED_PIECES = (300, 2000)  # learned pieces when --vocab-size is not given: 1 per 200 characters, clamped


def fitted_vocab_size(distinct_chars: int, characters: int) -> int:
    """The vocabulary size a SentencePiece tokenizer gets when none is asked for: room for what
    it must hold, plus one learned piece per 200 characters of corpus, at least 300 and at
    most 2,000. A 200 KB English text gets 1,345; a 200 KB English and Korean chat file
    (76,000 characters of messages, 912 distinct) 1,553; the 2.9 M-character default corpus
    3,762 (the default model uses 3,200)."""
    low, high = FITTED_PIECES
    return SENTENCEPIECE_FIXED + distinct_chars + min(high, max(low, characters // 200))


def train_tokenizer(kind: str, texts: list[str], vocab_size: int | None = None) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.train(texts)
    if kind in ("bpe", "unigram"):
        if vocab_size is None:
            raise ChatbotError(f"--tokenizer {kind} needs --vocab-size (for example 2000).")
        return SentencePieceTokenizer.train(texts, kind, vocab_size)
    raise ChatbotError(f"unknown tokenizer {kind!r}: choose one of {', '.join(KINDS)}.")


def tokenizer_path(folder: Path, kind: str) -> Path:
    """The file in a checkpoint folder that holds a tokenizer of this kind."""
    if kind == "char":
        return Path(folder) / CharTokenizer.filename
    if kind in ("bpe", "unigram"):
        return Path(folder) / SentencePieceTokenizer.filename
    raise ChatbotError(f"{Path(folder) / 'config.json'}: unknown tokenizer kind {kind!r}.")


def load_tokenizer(folder: Path, kind: str) -> Tokenizer:
    path = tokenizer_path(folder, kind)
    loader = CharTokenizer.load if kind == "char" else lambda p: SentencePieceTokenizer.load(p, kind)
    if not path.is_file():
        raise ChatbotError(f"{path} is missing: the checkpoint folder is incomplete; "
                           f"copy the whole folder or retrain.")
    return loader(path)
