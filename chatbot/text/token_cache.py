"""The corpus as token ids on disk, tokenized once and memory-mapped.

Tokenizing a large corpus takes minutes and a Python list of its ids takes 28+ bytes per
token; a flat uint16 (or uint32, for vocabularies over 65,536) file takes 2 (or 4) and is
read through numpy's memmap, so training touches only the pages it reads. The file lives in
OUT/token-cache/, named by a hash of the corpus's content and the tokenizer's identity: a
second run (or a --resume) on the same corpus and tokenizer reuses it, and a changed corpus
or tokenizer gets a new one (the stale one is deleted). The ids are written in chunks with a
progress bar, and the small JSON description is written last, so a file left by a kill is
never taken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_write
from ..errors import ChatbotError
from .corpus import Corpus, characters, encode_piece
from .tokenizers import Tokenizer

CACHE_DIR = "token-cache"
CHUNK_TOKENS = 1 << 20  # ids held in memory before they are written


@dataclass
class TokenIds:
    ids: np.ndarray  # a read-only memmap
    doc_starts: np.ndarray  # int64: where each document begins
    path: Path
    reused: bool


def cache_key(corpus: Corpus, tokenizer: Tokenizer) -> str:
    digest = hashlib.sha256(corpus.sha256.encode() + b"\0" + tokenizer.identity())
    return digest.hexdigest()[:20]


def id_dtype(tokenizer: Tokenizer) -> np.dtype:
    return np.dtype(np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32)


def build_token_cache(corpus: Corpus, tokenizer: Tokenizer, out: Path, progress: bool = True) -> Path:
    """Write OUT/token-cache/<key>.* unless it is already there; returns the description's path."""
    folder = Path(out) / CACHE_DIR
    key = cache_key(corpus, tokenizer)
    meta_path = folder / f"{key}.json"
    if meta_path.exists():
        return meta_path
    folder.mkdir(parents=True, exist_ok=True)
    dtype = id_dtype(tokenizer)
    ids_path, starts_path = folder / f"{key}.{dtype.name}", folder / f"{key}.starts.npy"
    starts, total, chunk = array("q"), 0, []  # array: 8 bytes a document, not a Python int's 36
    bar = tqdm(total=corpus.characters, unit="char", unit_scale=True, desc="tokenizing",
               disable=None if progress else True)
    try:
        with open(ids_path, "wb") as f:
            for first, piece in corpus.pieces():
                if first:
                    starts.append(total + len(chunk))
                chunk.extend(encode_piece(tokenizer, piece))
                bar.update(characters(piece))
                if len(chunk) >= CHUNK_TOKENS:
                    np.asarray(chunk, dtype=dtype).tofile(f)
                    total, chunk = total + len(chunk), []
            np.asarray(chunk, dtype=dtype).tofile(f)
            total += len(chunk)
        np.save(starts_path, np.frombuffer(starts, dtype=np.int64))
    finally:
        bar.close()
    meta = {"tokens": total, "dtype": dtype.name, "documents": len(starts), "corpus_sha256": corpus.sha256,
            "tokenizer": tokenizer.describe()}
    atomic_write(meta_path, json.dumps(meta, indent=1).encode())  # last: the cache is complete
    for stale in folder.iterdir():  # caches of an earlier corpus or tokenizer
        if not stale.name.startswith(key):
            stale.unlink(missing_ok=True)
    return meta_path


def cache_bytes(corpus: Corpus, tokenizer: Tokenizer) -> int:
    """About the cache's size, for the disk-space check: a character tokenizer makes one id
    per character and two markers per turn; SentencePiece makes fewer (more only for
    characters its sample never saw)."""
    return (corpus.characters + 2 * corpus.turns) * id_dtype(tokenizer).itemsize + 8 * corpus.documents


def open_token_cache(corpus: Corpus, tokenizer: Tokenizer, out: Path, reused: bool) -> TokenIds:
    folder = Path(out) / CACHE_DIR
    key = cache_key(corpus, tokenizer)
    try:
        meta = json.loads((folder / f"{key}.json").read_text())
        dtype = np.dtype(meta["dtype"])
        path = folder / f"{key}.{dtype.name}"
        if path.stat().st_size != meta["tokens"] * dtype.itemsize:
            raise ValueError(f"{path.name} has {path.stat().st_size:,} bytes, not "
                             f"{meta['tokens'] * dtype.itemsize:,}")
        ids = np.memmap(path, dtype=dtype, mode="r", shape=(meta["tokens"],))
        starts = np.load(folder / f"{key}.starts.npy", allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ChatbotError(f"the token cache in {folder} is damaged ({exc}). Delete that folder; "
                           f"the next run tokenizes the corpus again.") from None
    return TokenIds(ids, starts, path, reused)


def token_cache_exists(corpus: Corpus, tokenizer: Tokenizer, out: Path) -> bool:
    return (Path(out) / CACHE_DIR / f"{cache_key(corpus, tokenizer)}.json").exists()
