"""Storing a corpus someone uploaded: size-capped, under a name we make, checked to read.

The name a browser sends is untrusted (it may be `../../x.txt`, absolute, very long or full
of odd characters); only its suffix and a sanitised stem survive, prefixed by the content's
hash, so the file always lands directly inside the uploads folder.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from chatbot.atomic import atomic_write
from chatbot.errors import ChatbotError
from chatbot.text.corpus import CORPUS_SUFFIXES, load_corpus


def save_upload(folder: Path, name: str, content: bytes, max_mb: int) -> Path:
    """Write `content` into `folder` and check it reads as a corpus; a bad file is deleted again."""
    if len(content) > max_mb * 1024 * 1024:
        raise ChatbotError(f"{name} is {len(content) / 2**20:.1f} MB; the limit is {max_mb} MB. "
                           f"Train on a larger corpus from the command line with train_lm.py.")
    base = re.split(r"[\\/]", name)[-1]  # a Windows or POSIX path: keep only its last part
    suffix = Path(base).suffix.lower()
    if suffix not in CORPUS_SUFFIXES:
        raise ChatbotError(f"{name}: upload a .txt or .jsonl file.")
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", Path(base).stem)[:40].strip("_") or "corpus"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(content).hexdigest()[:12]}-{stem}{suffix}"
    # The page saves the upload again on every rerun, while a training run may be reading it:
    # the name carries the content's hash, so an existing file is already right and is left
    # alone, and a new one appears whole (atomic write), never half-written.
    if not path.exists():
        atomic_write(path, content)
    try:
        load_corpus(path)
    except ChatbotError as exc:
        path.unlink(missing_ok=True)
        raise ChatbotError(str(exc).replace(str(path), name)) from None
    return path
