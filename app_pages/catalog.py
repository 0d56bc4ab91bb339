"""Which checkpoint folders are under models/, described from their config.json without
loading weights, so a picker can list them all and say why a broken one cannot be used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chatbot.errors import ChatbotError
from chatbot.lm.checkpoint import WEIGHTS_FILE
from chatbot.lm.spec import CONFIG_FILE, RunSpec, read_spec, short
from chatbot.text.tokenizers import tokenizer_path


@dataclass
class CheckpointInfo:
    name: str
    folder: Path
    problem: str | None = None  # why it cannot be loaded; None when it looks valid
    spec: RunSpec | None = None  # its config.json
    summary: str = ""  # the picker's line for a valid folder, built once from its spec

    @property
    def valid(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        if not self.valid:
            return f"{self.name}: not loadable ({self.problem})"
        return self.summary


def _summary(name: str, spec: RunSpec) -> str:
    model = spec.model
    corpus = Path(str(spec.corpus.path) if spec.corpus else "?").name or "?"
    bpc = spec.metrics.get("val_bits_per_char")
    score = f"{bpc:.2f} bits/char" if isinstance(bpc, (int, float)) else "not evaluated"
    copy = f" + copy {model.copy_window}" if model.copy_window else ""
    return (f"{name} · {model.cell} {model.num_layers}×{model.hidden_size}{copy} "
            f"({model.num_parameters() / 1e6:.2f} M) · {spec.tokenizer.kind} · {corpus} · {score}")


def describe_folder(folder: Path) -> CheckpointInfo:
    """A folder's entry: valid with its summary, or broken with the reason. Whatever its
    config.json holds, this returns (a picker lists every folder; one bad folder must not
    take the page down)."""
    info = CheckpointInfo(folder.name, folder)
    try:
        spec = read_spec(folder)
        tokenizer_file = tokenizer_path(folder, spec.tokenizer.kind).name
        info.summary = _summary(folder.name, spec)
    except ChatbotError as exc:
        info.problem = str(exc).replace(str(folder / CONFIG_FILE), CONFIG_FILE)
        return info
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        info.problem = f"{CONFIG_FILE} has a setting of the wrong kind ({short(str(exc))})"
        return info
    for name in (WEIGHTS_FILE, tokenizer_file):
        if not (folder / name).is_file():
            info.problem = f"{name} is missing"
            return info
    info.spec = spec
    return info


def list_checkpoints(root: str | Path = "models") -> list[CheckpointInfo]:
    """Every folder directly under `root` that looks like a checkpoint, valid ones first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [describe_folder(p) for p in sorted(root.iterdir())
             if p.is_dir() and not p.name.startswith(".")]
    return sorted(found, key=lambda i: (not i.valid, i.name != "default", i.name))
