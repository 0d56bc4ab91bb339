"""Checkpoint folders: model.safetensors + config.json + the tokenizer file.

Nothing here unpickles: weights go through safetensors (a JSON header and raw tensor
bytes) and everything else is JSON or a SentencePiece protobuf, so a checkpoint from a
stranger cannot run code. Every file is written atomically, config.json last, and config.json
records the sha256 of the weights it was written with: weights from another save (a crash
between the two writes) are refused on load instead of running under the wrong settings.
"""

from __future__ import annotations

import hashlib
import json
import os
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
from .spec import CONFIG_FILE, FORMAT, WEIGHTS_HASH, RunSpec, TokenizerSpec, read_spec

WEIGHTS_FILE = "model.safetensors"
PREVIOUS_WEIGHTS = "model.previous.safetensors"  # only while a save is under way (or was cut short)


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


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of the tensors themselves (names, dtypes, shapes and data, in name order), so it
    does not depend on how a file lays out its header or metadata."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.view(-1).view(torch.uint8).numpy() if t.numel() else b"")
    return h.hexdigest()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    atomic_write(path, tensor_bytes(tensors, metadata))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file; anything else (a pickle, a truncated file) is refused."""
    tensors, metadata, _ = _load_tensors(Path(path))
    return tensors, metadata


def _read(path: Path, size: int | None = None) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read() if size is None else f.read(size)
    except FileNotFoundError:
        raise ChatbotError(f"{path} is missing: the checkpoint folder is incomplete; "
                           f"copy the whole folder or retrain.") from None
    except OSError as exc:
        raise ChatbotError(f"{path}: cannot read it ({exc.strerror}).") from None


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape, from the safetensors header alone (no tensor data is read)."""
    path = Path(path)
    head = _read(path, 8)
    header_len = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
    raw = head + (_read(path, 8 + header_len)[8:] if 0 < header_len <= 100_000_000 else b"")
    refusal = _not_safetensors(raw)
    if refusal:
        raise ChatbotError(f"{path}: {refusal}")
    try:
        header = json.loads(raw[8:8 + header_len])
        return {name: tuple(int(n) for n in entry["shape"]) for name, entry in header.items()
                if name != "__metadata__"}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ChatbotError(f"{path}: corrupt safetensors header ({exc!r}). Copy it again or "
                           f"retrain.") from None


def _load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """(tensors, metadata, sha256 of the file's bytes)."""
    raw = _read(path)
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
    return tensors, metadata, hashlib.sha256(raw).hexdigest()


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


def save_checkpoint(folder: Path, model: LanguageModel, tokenizer: Tokenizer, spec: RunSpec,
                    dtype: torch.dtype = torch.float32) -> None:
    """Write the weights (as `dtype`), the tokenizer and config.json (the spec, with this
    model's and tokenizer's own description)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {name: w.to(dtype) for name, w in model.weights_for_saving().items()}
    # The pair changes as one: the weights config.json names stay readable as PREVIOUS_WEIGHTS
    # (a hard link, no copy) until the new config.json is in place, so a crash between the two
    # writes leaves the previous pair, which load_checkpoint finds by config.json's hash.
    current, previous = folder / WEIGHTS_FILE, folder / PREVIOUS_WEIGHTS
    previous.unlink(missing_ok=True)
    if current.exists() and (folder / CONFIG_FILE).exists():
        try:
            os.link(current, previous)
        except OSError:  # a file system without hard links
            atomic_write(previous, current.read_bytes())
    save_tensors(current, weights, {"format": FORMAT})
    tokenizer.save(folder)
    spec = replace(spec, model=model.config, tokenizer=TokenizerSpec(**tokenizer.describe()),
                   weights_sha256=weights_digest(weights))
    atomic_write(folder / CONFIG_FILE, json.dumps(spec.to_json(), indent=2, ensure_ascii=False).encode())
    previous.unlink(missing_ok=True)


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
    # Shapes from the header first: a config.json that claims a huge model is refused before
    # anything is allocated (or the whole weights file read).
    model_cfg.check_weight_shapes(tensor_shapes(folder / WEIGHTS_FILE), str(folder / WEIGHTS_FILE))
    weights, _, sha256 = _load_tensors(folder / WEIGHTS_FILE)
    recorded = spec.weights_sha256  # None in checkpoints saved before it was recorded
    if recorded is not None and recorded != weights_digest(weights) and (folder / PREVIOUS_WEIGHTS).is_file():
        # A save was cut short after the new weights and before the new config.json: the
        # previous weights, which this config.json was written with, are still there.
        model_cfg.check_weight_shapes(tensor_shapes(folder / PREVIOUS_WEIGHTS), str(folder / PREVIOUS_WEIGHTS))
        previous, _, previous_sha = _load_tensors(folder / PREVIOUS_WEIGHTS)
        if weights_digest(previous) == recorded:
            weights, sha256 = previous, previous_sha
    if recorded is not None and recorded != weights_digest(weights):
        raise ChatbotError(f"{folder / WEIGHTS_FILE} holds other weights than {CONFIG_FILE} was "
                           f"saved with (their sha256 differs from {CONFIG_FILE}'s {WEIGHTS_HASH}): the save was "
                           f"interrupted between the two files, or one was replaced. If the run's "
                           f"resume/ folder is there, continue it with train_lm.py --resume (it "
                           f"writes both again); otherwise copy the whole folder again or retrain.")
    model = LanguageModel(model_cfg)
    model.load_saved_weights(weights, str(folder / WEIGHTS_FILE))
    model.to(device).eval()
    return Checkpoint(model, tokenizer, spec, folder, sha256[:16])


FP16_MAX = torch.finfo(torch.float16).max
TRAIN_LOG = "train_log.jsonl"


def save_fp16_copy(source: str | Path, dest: str | Path) -> Path:
    """A copy of checkpoint `source` in the new folder `dest` with its weights stored as fp16:
    half the file, and they load back as fp32 (a rounding of about 1 part in 2,000 per
    weight). The training log comes along; the resume points do not."""
    source, dest = Path(source), Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ChatbotError(f"{dest} is not empty; choose a new --out folder (nothing there is overwritten).")
    ckpt = load_checkpoint(source)
    for name, w in ckpt.model.weights_for_saving().items():
        if w.abs().max() > FP16_MAX:
            raise ChatbotError(f"{source}: tensor {name} holds values beyond fp16's range "
                               f"(±{FP16_MAX:,.0f}); keep this model in fp32.")
    save_checkpoint(dest, ckpt.model, ckpt.tokenizer, ckpt.spec, torch.float16)
    if (source / TRAIN_LOG).is_file():
        atomic_write(dest / TRAIN_LOG, (source / TRAIN_LOG).read_bytes())
    return dest
