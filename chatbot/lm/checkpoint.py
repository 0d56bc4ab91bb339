"""Checkpoint folders: model.safetensors + config.json + the tokenizer file.

Nothing here unpickles: weights go through safetensors (a JSON header and raw tensor
bytes) and everything else is JSON or a SentencePiece protobuf, so a checkpoint from a
stranger cannot run code. Every file is written atomically, config.json last.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..atomic import atomic_write
from ..errors import ChatbotError
from ..text.tokenizers import Tokenizer, load_tokenizer
from .model import LanguageModel
from .spec import CONFIG_FILE, FORMAT, RunSpec, TokenizerSpec, read_spec

WEIGHTS_FILE = "model.safetensors"


@dataclass
class Checkpoint:
    model: LanguageModel
    tokenizer: Tokenizer
    spec: RunSpec  # config.json: model, tokenizer, training, corpus, metrics
    folder: Path
    fingerprint: str = ""  # sha256 of the weights: a saved memory belongs to exactly these

    @property
    def metrics(self) -> dict:
        return self.spec.metrics


def tensor_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """Tensors as safetensors bytes (a JSON header and raw data: nothing to unpickle)."""
    return st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    atomic_write(path, tensor_bytes(tensors, metadata))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file; anything else (a pickle, a truncated file) is refused."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ChatbotError(f"{path} is missing: the checkpoint folder is incomplete; "
                           f"copy the whole folder or retrain.") from None
    except OSError as exc:
        raise ChatbotError(f"{path}: cannot read it ({exc.strerror}).") from None
    refusal = _not_safetensors(raw)
    if refusal:
        raise ChatbotError(f"{path}: {refusal}")
    try:
        tensors = st_load(raw)
        header_len = struct.unpack("<Q", raw[:8])[0]
        metadata = json.loads(raw[8:8 + header_len]).get("__metadata__", {}) or {}
    except (SafetensorError, ValueError, struct.error) as exc:
        raise ChatbotError(f"{path}: corrupt or truncated safetensors file ({exc}). "
                           f"Copy it again or retrain.") from None
    return tensors, metadata


def _not_safetensors(raw: bytes) -> str | None:
    """Why `raw` is not a safetensors file, or None if it is one.

    A safetensors file is recognised by its structure: an 8-byte little-endian header length,
    then that many bytes of a JSON object. Only a file that fails this is looked at for a
    pickle's or a zip's signature, to say what it is instead; guessing from the first bytes
    alone refused valid files whose header length ends in 0x80 0x02..0x05 (640, 896, ... bytes).
    """
    if len(raw) >= 10:
        header_len = struct.unpack("<Q", raw[:8])[0]
        if header_len <= len(raw) - 8 and raw[8:9] == b"{":
            try:
                if isinstance(json.loads(raw[8:8 + header_len]), dict):
                    return None
            except (ValueError, UnicodeDecodeError, RecursionError):
                pass
    if raw[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or raw[:4] == b"PK\x03\x04":
        return ("this is a pickle / torch.save file. lstm-chat never unpickles (unpickling can run "
                "arbitrary code), so it is refused. Use a checkpoint folder written by train_lm.py.")
    if len(raw) < 10:
        return "too short to be a safetensors file (empty or truncated). Copy it again or retrain."
    return "not a safetensors file (bad header: truncated or another format). Copy it again or retrain."


def save_checkpoint(folder: Path, model: LanguageModel, tokenizer: Tokenizer, spec: RunSpec) -> None:
    """Write the weights, the tokenizer and config.json (the spec, with this model's and
    tokenizer's own description)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / WEIGHTS_FILE, model.weights_for_saving(), {"format": FORMAT})
    tokenizer.save(folder)
    spec = replace(spec, model=model.config, tokenizer=TokenizerSpec(**tokenizer.describe()))
    atomic_write(folder / CONFIG_FILE, json.dumps(spec.to_json(), indent=2, ensure_ascii=False).encode())


def load_checkpoint(folder: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    folder = Path(folder)
    if folder.is_file():
        refusal = _not_safetensors(folder.read_bytes()[:4096]) or ""
        raise ChatbotError(f"{folder}: {refusal or 'this is a file'} Pass the checkpoint folder "
                           f"(with {WEIGHTS_FILE} and {CONFIG_FILE}), not a file.")
    if not folder.is_dir():
        raise ChatbotError(f"no checkpoint at {folder}. Train one with: "
                           f"python train_lm.py --corpus corpora/ --out {folder}")
    spec = read_spec(folder)
    model_cfg = spec.model
    tokenizer = load_tokenizer(folder, spec.tokenizer.kind)
    if tokenizer.vocab_size != model_cfg.vocab_size:
        raise ChatbotError(f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens but "
                           f"config.json says the model has {model_cfg.vocab_size}; the files "
                           f"come from different runs.")
    weights, _ = load_tensors(folder / WEIGHTS_FILE)
    model = LanguageModel(model_cfg)
    model.load_saved_weights(weights, str(folder / WEIGHTS_FILE))
    model.to(device).eval()
    with open(folder / WEIGHTS_FILE, "rb") as f:
        fingerprint = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    return Checkpoint(model, tokenizer, spec, folder, fingerprint)
