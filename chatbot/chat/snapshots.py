"""A conversation's memory as bytes: recurrent states, logits and the sampling generator.

Stored with safetensors (a JSON header and raw tensor bytes), never pickle, so a database
someone hands you cannot run code. Decoding checks every shape against the model that will
use the memory and raises ChatbotError for anything else.
"""

from __future__ import annotations

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load

from ..errors import ChatbotError
from ..lm.checkpoint import tensor_bytes
from ..lm.model import LanguageModel
from ..lm.state import RecurrentState


def _state_tensors(prefix: str, state: RecurrentState) -> dict[str, torch.Tensor]:
    """One vector a layer: `prefix.h.0`, `prefix.h.1`, ... and, for an LSTM, `prefix.c.0`, ...;
    with a copy window, `prefix.keys` (W, key_size) and `prefix.values` (W,)."""
    tensors = {f"{prefix}.{name}.{layer}": vector
               for name, t in zip("hc", state.tensors()) for layer, vector in enumerate(t[:, 0])}
    if state.keys is not None:
        tensors.update({f"{prefix}.keys": state.keys[:, 0], f"{prefix}.values": state.values[:, 0]})
    return tensors


def _state_from(tensors: dict[str, torch.Tensor], prefix: str, model: LanguageModel) -> RecurrentState:
    cfg = model.config
    names = "hc"[:len(model.initial_state(1).tensors())]
    try:
        vectors = [[tensors[f"{prefix}.{name}.{i}"] for i in range(cfg.num_layers)] for name in names]
    except KeyError as exc:
        raise ChatbotError(f"the saved memory lacks {exc} for a {cfg.num_layers}-layer {cfg.cell}.") from None
    for t in sum(vectors, []):
        if t.shape != (cfg.hidden_size,) or t.dtype != torch.float32:
            raise ChatbotError(f"a saved state vector has shape {tuple(t.shape)} ({t.dtype}); the "
                               f"model needs ({cfg.hidden_size},) float32.")
    state = RecurrentState.from_tensors(cfg.cell, tuple(torch.stack(v)[:, None] for v in vectors))
    if cfg.copy_window:
        keys, values = tensors.get(f"{prefix}.keys"), tensors.get(f"{prefix}.values")
        shapes = ((cfg.copy_window, cfg.copy_key_size), torch.float32), ((cfg.copy_window,), torch.int64)
        for t, (shape, dtype) in zip((keys, values), shapes):
            if t is None or t.shape != shape or t.dtype != dtype:
                raise ChatbotError(f"the saved memory's copy window does not fit this model (it needs "
                                   f"{shape} {dtype}, found {None if t is None else (tuple(t.shape), t.dtype)}).")
        if not ((values >= -1) & (values < cfg.vocab_size)).all():
            raise ChatbotError("the saved memory's copy window holds tokens this model does not have.")
        state.keys, state.values = keys[:, None], values[:, None]
    return state


def _decode(blob: bytes) -> dict[str, torch.Tensor]:
    try:
        return st_load(bytes(blob))
    except (SafetensorError, ValueError, TypeError) as exc:
        raise ChatbotError(f"the saved memory is corrupt ({exc}).") from None


def _logits(tensors: dict[str, torch.Tensor], key: str, model: LanguageModel) -> torch.Tensor | None:
    t = tensors.get(key)
    if t is not None and (t.shape != (model.config.vocab_size,) or t.dtype != torch.float32):
        raise ChatbotError(f"saved logits have shape {tuple(t.shape)}; the model has "
                           f"{model.config.vocab_size} tokens.")
    return t


def encode_turn(before_user: RecurrentState, before_reply: RecurrentState,
                logits_before_reply: torch.Tensor, next_logits: torch.Tensor | None) -> bytes:
    """The snapshots a turn needs to be regenerated, rewound or continued."""
    tensors = {**_state_tensors("before_user", before_user), **_state_tensors("before_reply", before_reply),
               "logits_before_reply": logits_before_reply}
    if next_logits is not None:
        tensors["next_logits"] = next_logits
    return tensor_bytes(tensors)


def decode_turn(blob: bytes, model: LanguageModel):
    """(state before user, state before reply, logits before reply, next logits or None)."""
    t = _decode(blob)
    logits = _logits(t, "logits_before_reply", model)
    if logits is None:
        raise ChatbotError("the saved turn lacks the logits before its reply.")
    return (_state_from(t, "before_user", model), _state_from(t, "before_reply", model),
            logits, _logits(t, "next_logits", model))


def encode_memory(state: RecurrentState, generator: torch.Tensor) -> bytes:
    """The state after the last token, and the generator's position (its get_state()), so
    that even an unseeded conversation continues exactly as it would have."""
    return tensor_bytes({**_state_tensors("state", state), "generator": generator})


def decode_memory(blob: bytes, model: LanguageModel) -> tuple[RecurrentState, torch.Tensor]:
    t = _decode(blob)
    generator = t.get("generator")
    if generator is None or generator.dtype != torch.uint8:
        raise ChatbotError("the saved memory lacks the sampling generator's state.")
    return _state_from(t, "state", model), generator
