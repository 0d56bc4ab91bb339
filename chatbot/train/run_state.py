"""Everything --resume needs to continue a run exactly, stored without pickle.

OUT/resume/step-N/ holds the weights, the optimizer's moments, the carried hidden state and
the RNG state as safetensors, and the counters as JSON (state.json, whose step the tensor files
repeat in their metadata). A snapshot is written whole into a new folder and only then named
by OUT/resume/LATEST, itself replaced atomically; older snapshots are deleted after that. So a
kill at any moment, even mid-write, leaves LATEST naming a complete snapshot.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import atomic_write
from ..errors import ChatbotError
from ..lm.checkpoint import load_tensors, save_tensors
from ..lm.model import LanguageModel
from ..lm.spec import RunSpec
from ..lm.state import RecurrentState

RESUME_DIR = "resume"
LATEST = "LATEST"


@dataclass
class RunState:
    step: int
    tokens_seen: int
    train_seconds: float
    best_val: float | None
    carried: RecurrentState  # one row per text stream
    spec: RunSpec  # the run's settings, as in config.json


def save_run_state(out: Path, model: LanguageModel, optimizer: torch.optim.Optimizer, run: RunState,
                   rank_rngs: list[torch.Tensor] | None = None):
    """`rank_rngs`: under torchrun, every rank's CPU generator state (each drew its own dropout)."""
    root = Path(out) / RESUME_DIR
    name = f"step-{run.step}"
    folder = root / name
    if folder.exists():  # a snapshot of this step left half-written by a kill, or rewritten
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    try:
        _write_snapshot(folder, model, optimizer, run, rank_rngs)
    except OSError:  # e.g. a full disk: free what was written; LATEST still names the last good one
        shutil.rmtree(folder, ignore_errors=True)
        raise
    atomic_write(root / LATEST, name.encode())
    for old in root.iterdir():  # earlier snapshots, and the files of the old flat layout
        if old.name not in (name, LATEST):
            shutil.rmtree(old) if old.is_dir() else old.unlink()


def _write_snapshot(folder: Path, model: LanguageModel, optimizer: torch.optim.Optimizer, run: RunState,
                    rank_rngs: list[torch.Tensor] | None):
    meta = {"step": str(run.step)}
    save_tensors(folder / "model.safetensors", model.weights_for_saving(), meta)
    opt = optimizer.state_dict()
    tensors = {f"opt.{idx}.{key}": value for idx, slots in opt["state"].items()
               for key, value in slots.items()}
    tensors.update({f"carried.{i}": t for i, t in enumerate(run.carried.tensors())})
    if run.carried.keys is not None:  # a copy head's window (chatbot/lm/copy.py)
        tensors.update({"carried.keys": run.carried.keys, "carried.values": run.carried.values})
    tensors["rng.torch"] = torch.get_rng_state()
    tensors.update({f"rng.torch.rank{r}": rng for r, rng in enumerate(rank_rngs or [])})
    save_tensors(folder / "trainer.safetensors", tensors, meta)
    state = {"step": run.step, "tokens_seen": run.tokens_seen, "train_seconds": run.train_seconds,
             "best_val": run.best_val, "param_groups": opt["param_groups"], "run": run.spec.to_json()}
    atomic_write(folder / "state.json", json.dumps(state, indent=1, ensure_ascii=False).encode())


def _snapshot(out: Path) -> Path:
    """The folder LATEST names (or, for runs saved before snapshots, resume/ itself)."""
    root = Path(out) / RESUME_DIR
    try:
        name = (root / LATEST).read_bytes().decode("utf-8").strip()
    except FileNotFoundError:
        return root
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatbotError(f"{root / LATEST} is damaged ({exc}); cannot resume from it.") from None
    if not name.startswith("step-") or "/" in name or "\\" in name:
        raise ChatbotError(f"{root / LATEST} is damaged ({name[:40]!r}); cannot resume from it.")
    return root / name


def has_run_state(out: Path) -> bool:
    root = Path(out) / RESUME_DIR
    return (root / LATEST).is_file() or (root / "state.json").is_file()


def read_run_spec(out: Path) -> RunSpec:
    """The settings the run was started with (to rebuild its model and tokenizer)."""
    try:
        return RunSpec.from_json(_read_state_json(_snapshot(out) / "state.json")["run"])
    except (KeyError, TypeError) as exc:
        raise ChatbotError(f"{out}: the resume point's training settings are damaged ({exc}).") from None


def load_run_state(out: Path, model: LanguageModel, optimizer: torch.optim.Optimizer,
                   device: torch.device, rank: int = 0) -> RunState:
    folder = _snapshot(out)
    state = _read_state_json(folder / "state.json")
    weights, wmeta = load_tensors(folder / "model.safetensors")
    tensors, tmeta = load_tensors(folder / "trainer.safetensors")
    for meta, name in ((wmeta, "model.safetensors"), (tmeta, "trainer.safetensors")):
        if meta.get("step") != str(state["step"]):
            raise ChatbotError(f"{folder / name} is from step {meta.get('step')} but state.json is "
                               f"from step {state['step']}: the run was stopped while saving. "
                               f"Start a new run or restore the folder from a backup.")
    model.load_saved_weights(weights, str(folder / "model.safetensors"))
    try:
        slots: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, idx, name = key.split(".", 2)
                slots.setdefault(int(idx), {})[name] = value.to(device) if name != "step" else value
        optimizer.load_state_dict({"state": slots, "param_groups": state["param_groups"]})
        n_carried = sum(k.removeprefix("carried.").isdigit() for k in tensors)
        carried = RecurrentState.from_tensors(model.config.cell, tuple(
            tensors[f"carried.{i}"].to(device) for i in range(n_carried)))
        if model.config.copy_window:
            carried.keys, carried.values = tensors["carried.keys"].to(device), tensors["carried.values"].to(device)
        torch.set_rng_state(tensors.get(f"rng.torch.rank{rank}", tensors["rng.torch"]))
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
        raise ChatbotError(f"{folder}: the optimizer or generator state in trainer.safetensors / "
                           f"state.json does not fit this run ({type(exc).__name__}: "
                           f"{str(exc)[:200]}); cannot resume from it.") from None
    return RunState(state["step"], state["tokens_seen"], state["train_seconds"], state["best_val"],
                    carried, RunSpec.from_json(state["run"]))


STATE_FIELDS = {"step": int, "tokens_seen": int, "train_seconds": (int, float),
                "best_val": (int, float, type(None)), "param_groups": list, "run": dict}
RUN_FIELDS = ("model", "tokenizer", "training", "corpus")


def read_run_step(out: Path) -> int:
    """The step the run's resume point is at."""
    return _read_state_json(_snapshot(out) / "state.json")["step"]


def _read_state_json(path: Path) -> dict:
    """state.json, checked: every field a resume uses is there with the right type, so a
    damaged file is an error naming it (not a KeyError or RecursionError later)."""
    try:
        state = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ChatbotError(f"nothing to resume: {path} does not exist. Run without --resume to "
                           f"start training in {path.parent.parent}.") from None
    except RecursionError:
        raise ChatbotError(f"{path}: damaged (nested too deeply to be a resume state); cannot "
                           f"resume from it.") from None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        raise ChatbotError(f"{path}: unreadable ({exc}); cannot resume from it.") from None
    problem = None
    if not isinstance(state, dict):
        problem = "not a JSON object"
    else:
        for name, kind in STATE_FIELDS.items():
            if name not in state:
                problem = f'"{name}" is missing'
            elif not isinstance(state[name], kind) or isinstance(state[name], bool):
                problem = f'"{name}" has the wrong type ({type(state[name]).__name__})'
            if problem:
                break
        else:
            if state["step"] < 0:
                problem = '"step" is negative'
            elif missing := [k for k in RUN_FIELDS if not isinstance(state["run"].get(k), dict)]:
                problem = f'"run" lacks {missing}'
    if problem:
        raise ChatbotError(f"{path}: damaged ({problem}); cannot resume from it. Start a new run "
                           f"or restore the folder from a backup.")
    return state
