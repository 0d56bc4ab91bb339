"""Which checkpoint folders are under models/, described from their config.json without
loading weights, so a picker can list them all and say why a broken one cannot be used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chatbot.lm.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_config
from chatbot.errors import ChatbotError
from chatbot.lm.model import ModelConfig
from chatbot.text.tokenizers import tokenizer_path


@dataclass
class CheckpointInfo:
    name: str
    folder: Path
    problem: str | None = None  # why it cannot be loaded; None when it looks valid
    config: dict | None = None

    @property
    def valid(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        if not self.valid:
            return f"{self.name}: not loadable ({self.problem})"
        c = self.config
        model, tok, metrics = c["model"], c["tokenizer"], c.get("metrics", {})
        params = ModelConfig.from_dict(model).num_parameters()
        corpus = Path(str(c.get("corpus", {}).get("path", "?"))).name or "?"
        bpc = metrics.get("val_bits_per_char")
        score = f"{bpc:.2f} bits/char" if isinstance(bpc, (int, float)) else "not evaluated"
        return (f"{self.name} · {model['cell']} {model['num_layers']}×{model['hidden_size']} "
                f"({params / 1e6:.2f} M) · {tok['kind']} · {corpus} · {score}")


def describe_folder(folder: Path) -> CheckpointInfo:
    info = CheckpointInfo(folder.name, folder)
    try:
        config = read_config(folder)
        ModelConfig.from_dict(config["model"])
        tokenizer_file = tokenizer_path(folder, config["tokenizer"]["kind"]).name
    except ChatbotError as exc:
        info.problem = str(exc).replace(str(folder / CONFIG_FILE), CONFIG_FILE)
        return info
    except (KeyError, TypeError) as exc:
        info.problem = f"{CONFIG_FILE} lacks {exc}"
        return info
    for name in (WEIGHTS_FILE, tokenizer_file):
        if not (folder / name).is_file():
            info.problem = f"{name} is missing"
            return info
    info.config = config
    return info


def list_checkpoints(root: str | Path = "models") -> list[CheckpointInfo]:
    """Every folder directly under `root` that looks like a checkpoint, valid ones first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [describe_folder(p) for p in sorted(root.iterdir())
             if p.is_dir() and not p.name.startswith(".")]
    return sorted(found, key=lambda i: (not i.valid, i.name != "default", i.name))
