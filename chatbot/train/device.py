"""Where and how precisely a run computes: the device, and bf16 where it works.

`--precision bf16` runs the matrix products in bfloat16 under autocast (weights stay fp32);
`auto` picks it where the hardware does it natively, after a one-step probe shows that this
model's kernels accept it here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ChatbotError
from ..lm.copy import copyable
from ..lm.model import LanguageModel


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ChatbotError("--device cuda was asked for but no CUDA GPU is available; use --device auto.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ChatbotError("--device mps was asked for but MPS is not available; use --device auto.")
    if name not in ("cpu", "cuda", "mps"):
        raise ChatbotError(f"unknown --device {name!r}: choose auto, cpu, cuda or mps.")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matrix products run in hardware here (elsewhere they are emulated, slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # oneDNN's own check for AVX512-BF16 / AMX
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(check is not None and check())
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if name == "bf16" and device.type == "mps":
        raise ChatbotError("--precision bf16 is not supported on MPS; use fp32.")
    return name


def bf16_works(model: LanguageModel, device: torch.device) -> str | None:
    """None if a bf16 forward and backward of this model runs here, else the error's first
    line. cuDNN's RNN kernels have taken bfloat16 only since cuDNN 9.13, so a GPU build or
    driver may refuse it; asking costs one two-token step. In eval mode (no dropout), so no
    random numbers are drawn, and the gradients are dropped again."""
    was_training = model.training
    model.eval()
    try:
        ids = torch.zeros(1, 2, dtype=torch.long, device=device)
        loss, _ = training_loss(model, ids, ids, None, True)
        loss.backward()
        return None
    except RuntimeError as exc:
        return str(exc).strip().splitlines()[0][:200]
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def checked_precision(asked: str, resolved: str, model: LanguageModel, device: torch.device) -> str:
    """`resolved`, unless it is bf16 and bf16 fails here: then fp32 for --precision auto, or
    an error that says so for an explicit --precision bf16."""
    if resolved != "bf16" or (problem := bf16_works(model, device)) is None:
        return resolved
    if asked == "auto":
        return "fp32"
    raise ChatbotError(f"--precision bf16 does not work for this model on {device} ({problem}); "
                       f"use --precision fp32 (or auto, which picks bf16 only where it works).")


def training_loss(model: LanguageModel, x: torch.Tensor, y: torch.Tensor, state, bf16: bool,
                  copy_loss_weight: float = 0.0):
    """One forward at the run's precision (bf16 matmuls under autocast when asked); the loss
    itself is taken in fp32. Returns (loss, state after the window).

    copy_loss_weight g > 0 (a model with a copy head): each target's loss counts
    1 + g * (1 - p) times, where p is the probability the model gave it, for targets the head
    could have copied (copy.copyable: the target followed the token just read somewhere in the
    window); other targets count once, and the loss is the weighted mean. It leans the training
    toward the places where continuing a copy was possible and the model did not do it yet: the
    last pieces of a name it was told, which the head otherwise drops in favour of the language
    model's "." (bench/README.md, "The copy head")."""
    with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
        logits, after = model(x, state)
    nll = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none")
    if not copy_loss_weight:
        return nll.mean(), after
    if state is None:
        state = getattr(model, "module", model).initial_state(x.shape[0])  # (a DDP wrapper's model)
    can_copy = copyable(state.values.to(x.device), x, y).flatten()
    weight = 1 + copy_loss_weight * can_copy * (1 - torch.exp(-nll.detach()))
    return (weight * nll).sum() / weight.sum(), after
