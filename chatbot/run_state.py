"""Everything --resume needs to continue a run exactly, stored without pickle.

OUT/resume/ holds the latest weights, the optimizer's moments, the carried hidden state and
the RNG state as safetensors, and the counters as JSON. state.json is written last and names
its step, which the tensor files repeat in their metadata, so a crash between writes is
detected instead of resuming from a mixed state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic import atomic_write
from .checkpoint import load_tensors, save_tensors
from .errors import ChatbotError
from .model import LanguageModel, State

RESUME_DIR = "resume"


@dataclass
class RunState:
    step: int
    tokens_seen: int
    train_seconds: float
    best_val: float | None
    carried: State
    info: dict  # model/tokenizer/training/corpus settings of the run, as in config.json


def save_run_state(out: Path, model: LanguageModel, optimizer: torch.optim.Optimizer, run: RunState):
    folder = Path(out) / RESUME_DIR
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"step": str(run.step)}
    save_tensors(folder / "model.safetensors", model.weights_for_saving(), meta)
    opt = optimizer.state_dict()
    tensors = {f"opt.{idx}.{key}": value for idx, slots in opt["state"].items()
               for key, value in slots.items()}
    tensors.update({f"carried.{i}": t for i, t in enumerate(run.carried)})
    tensors["rng.torch"] = torch.get_rng_state()
    save_tensors(folder / "trainer.safetensors", tensors, meta)
    state = {"step": run.step, "tokens_seen": run.tokens_seen, "train_seconds": run.train_seconds,
             "best_val": run.best_val, "param_groups": opt["param_groups"], "run": run.info}
    atomic_write(folder / "state.json", json.dumps(state, indent=1, ensure_ascii=False).encode())


def has_run_state(out: Path) -> bool:
    return (Path(out) / RESUME_DIR / "state.json").is_file()


def read_run_info(out: Path) -> dict:
    """The settings the run was started with (to rebuild its model and tokenizer)."""
    return _read_state_json(Path(out) / RESUME_DIR / "state.json")["run"]


def load_run_state(out: Path, model: LanguageModel, optimizer: torch.optim.Optimizer,
                   device: torch.device) -> RunState:
    folder = Path(out) / RESUME_DIR
    state = _read_state_json(folder / "state.json")
    weights, wmeta = load_tensors(folder / "model.safetensors")
    tensors, tmeta = load_tensors(folder / "trainer.safetensors")
    for meta, name in ((wmeta, "model.safetensors"), (tmeta, "trainer.safetensors")):
        if meta.get("step") != str(state["step"]):
            raise ChatbotError(f"{folder / name} is from step {meta.get('step')} but state.json is "
                               f"from step {state['step']}: the run was stopped while saving. "
                               f"Start a new run or restore the folder from a backup.")
    model.load_saved_weights(weights, str(folder / "model.safetensors"))
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            slots.setdefault(int(idx), {})[name] = value.to(device) if name != "step" else value
    optimizer.load_state_dict({"state": slots, "param_groups": state["param_groups"]})
    n_carried = sum(k.startswith("carried.") for k in tensors)
    carried = tuple(tensors[f"carried.{i}"].to(device) for i in range(n_carried))
    torch.set_rng_state(tensors["rng.torch"])
    return RunState(state["step"], state["tokens_seen"], state["train_seconds"], state["best_val"],
                    carried, state["run"])


def _read_state_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChatbotError(f"nothing to resume: {path} does not exist. Run without --resume to "
                           f"start training in {path.parent.parent}.") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ChatbotError(f"{path}: unreadable ({exc}); cannot resume from it.") from None
