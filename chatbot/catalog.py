"""Which checkpoint folders are under models/, described from their config.json without
loading weights, so a picker can list them all and say why a broken one cannot be used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_config
from .errors import ChatbotError
from .model import ModelConfig
from .tokenizers import tokenizer_path


@dataclass
class CheckpointInfo:
    name: str
    folder: Path
    problem: str | None = None  # why it cannot be loaded; None when it looks valid
    config: dict | None = None
    summary: str = ""  # the picker's line for a valid folder, built once from its config


    @property
    def valid(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        if not self.valid:
            return f"{self.name}: not loadable ({self.problem})"
        return self.summary


# Sections of config.json that must be JSON objects when present (the picker reads into them).
OBJECT_SECTIONS = ("model", "tokenizer", "training", "corpus", "metrics")


def _summary(name: str, config: dict) -> str:
    model, tok, metrics = config["model"], config["tokenizer"], config.get("metrics", {})
    params = ModelConfig.from_dict(model).num_parameters()
    corpus = Path(str(config.get("corpus", {}).get("path", "?"))).name or "?"
    bpc = metrics.get("val_bits_per_char")
    score = f"{bpc:.2f} bits/char" if isinstance(bpc, (int, float)) else "not evaluated"
    return (f"{name} · {model['cell']} {model['num_layers']}×{model['hidden_size']} "
            f"({params / 1e6:.2f} M) · {tok['kind']} · {corpus} · {score}")


def describe_folder(folder: Path) -> CheckpointInfo:
    """A folder's entry: valid with its summary, or broken with the reason. Whatever its
    config.json holds, this returns (a picker lists every folder; one bad folder must not
    take the page down)."""
    info = CheckpointInfo(folder.name, folder)
    try:
        config = read_config(folder)
        for section in OBJECT_SECTIONS:
            if section in config and not isinstance(config[section], dict):
                raise ChatbotError(f"{CONFIG_FILE}: \"{section}\" must be a JSON object, got "
                                   f"{type(config[section]).__name__} {_short(config[section])}.")
        tokenizer_file = tokenizer_path(folder, config["tokenizer"]["kind"]).name
        info.summary = _summary(folder.name, config)
    except ChatbotError as exc:
        info.problem = str(exc).replace(str(folder / CONFIG_FILE), CONFIG_FILE)
        return info
    except KeyError as exc:
        info.problem = f"{CONFIG_FILE} lacks {exc}"
        return info
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        info.problem = f"{CONFIG_FILE} has a setting of the wrong kind ({_short(str(exc))})"
        return info
    for name in (WEIGHTS_FILE, tokenizer_file):
        if not (folder / name).is_file():
            info.problem = f"{name} is missing"
            return info
    info.config = config
    return info


def _short(value, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def list_checkpoints(root: str | Path = "models") -> list[CheckpointInfo]:
    """Every folder directly under `root` that looks like a checkpoint, valid ones first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [describe_folder(p) for p in sorted(root.iterdir())
             if p.is_dir() and not p.name.startswith(".")]
    return sorted(found, key=lambda i: (not i.valid, i.name != "default", i.name))
