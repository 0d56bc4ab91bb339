"""A run's spec: the tokenizer, the model and the training settings, and what the run read and
reached. It *is* config.json: training writes it into every checkpoint (and into each resume
point), loading a checkpoint and the model picker read it back.

config.json keeps the layout of format "lstm-chat/1":
    {"format", "model": ModelConfig, "tokenizer": {kind, vocab_size, file},
     "training": TrainConfig + "command", "corpus": {path, sha256, files, characters, tokens},
     "metrics": {val_nats_per_char, ...}, "weights_sha256": of the weights saved with it}
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import ChatbotError
from .model import ModelConfig

FORMAT = "lstm-chat/1"
CONFIG_FILE = "config.json"
PRECISIONS = ("auto", "fp32", "bf16")
WEIGHTS_HASH = "weights_sha256"  # in config.json: the weights it was written with
SECTIONS = ("model", "tokenizer", "training", "corpus", "metrics")  # each a JSON object


@dataclass
class TokenizerSpec:
    kind: str = "char"  # char | bpe | unigram
    vocab_size: int | None = None  # asked of SentencePiece; after training, the actual size
    file: str = ""  # the tokenizer's file in the checkpoint folder


@dataclass
class TrainConfig:
    """Optimisation settings; stored in config.json and in the resume state."""

    seq_len: int = 128
    batch_size: int = 32
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_steps: int | None = 2000  # optimizer steps of the whole run, counted across resumes
    time_budget: float | None = None  # seconds of training in this invocation
    eval_every: int = 100
    eval_seconds: float = 0.0  # when > 0: validate every this many seconds of training instead
    checkpoint_every: int = 0  # steps between resume points; 0: at each evaluation only
    val_fraction: float = 0.1
    seed: int = 1337
    device: str = "auto"
    precision: str = "fp32"  # bf16: matmuls in bfloat16 under autocast, weights stay fp32;
    # auto: bf16 where the hardware does it natively (AVX512-BF16/AMX CPUs, Ampere+ GPUs)
    fit_budget: str = ""  # with a time_budget, before the first step (chatbot/train/budget.py):
    # "size": pick the model size, warm-up, evaluation times and dropout from the measured speed;
    # "schedule": keep the size, fit the warm-up and evaluation times to the steps it will get
    plan: str = ""  # what the measurement found and chose, in words (written by train())
    init_from: str = ""  # a trained model folder: this run starts from its weights and tokenizer
    freeze_lm: bool = False  # train only the copy head; the language model's weights stay as they are
    copy_loss_weight: float = 0.0  # > 0: weigh targets the copy head could copy (train/device.py)

    def __post_init__(self):
        for name in ("seq_len", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ChatbotError(f"--{name.replace('_', '-')} must be at least 1.")
        if self.checkpoint_every < 0:
            raise ChatbotError("--checkpoint-every must be 0 (at evaluations only) or a number of steps.")
        if self.max_steps is not None and self.max_steps < 1:
            raise ChatbotError("--max-steps must be at least 1.")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ChatbotError("--time-budget must be a positive number of seconds.")
        if not 0 < self.lr < math.inf:
            raise ChatbotError(f"--lr must be a positive finite number, got {self.lr}.")
        if not 0 <= self.copy_loss_weight < math.inf:
            raise ChatbotError(f"--copy-loss-weight must be 0 (off) or a positive finite number, "
                               f"got {self.copy_loss_weight}.")
        if not self.grad_clip > 0:  # 0 would zero every gradient; a negative norm ascends
            raise ChatbotError(f"--grad-clip must be a positive gradient norm (inf turns clipping "
                               f"off), got {self.grad_clip}.")
        if self.warmup_steps < 0:
            raise ChatbotError(f"--warmup-steps must be 0 (no warm-up) or more, got {self.warmup_steps}.")
        if not 0 <= self.weight_decay < math.inf:
            raise ChatbotError(f"--weight-decay must be 0 or a positive finite number, got {self.weight_decay}.")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ChatbotError(f"--min-lr-ratio must be between 0 and 1, got {self.min_lr_ratio}.")
        if self.eval_seconds < 0:
            raise ChatbotError("--eval-seconds must be 0 (use --eval-every) or a positive number.")
        if self.fit_budget not in ("", "size", "schedule"):
            raise ChatbotError(f"unknown fit_budget {self.fit_budget!r}: choose size or schedule.")
        if self.precision not in PRECISIONS:
            raise ChatbotError(f"unknown --precision {self.precision!r}: choose {' or '.join(PRECISIONS)}.")

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class CorpusInfo:
    path: str  # as given (a file or a folder)
    sha256: str = ""  # of every file's name and bytes: a --resume checks the corpus is unchanged
    files: list[str] = field(default_factory=list)
    characters: int = 0
    tokens: int = 0


@dataclass
class RunSpec:
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    model: ModelConfig = field(default_factory=ModelConfig)  # vocab_size 0: the tokenizer's
    training: TrainConfig = field(default_factory=TrainConfig)
    corpus: CorpusInfo | None = None
    command: str = ""  # how the run was started
    metrics: dict = field(default_factory=dict)  # the checkpoint's validation scores
    weights_sha256: str | None = None  # written by save_checkpoint: the weights it goes with

    def to_json(self) -> dict:
        data = {"format": FORMAT, "model": self.model.to_dict(), "tokenizer": asdict(self.tokenizer),
                "training": {**asdict(self.training), "command": self.command}}
        if self.corpus is not None:
            data["corpus"] = asdict(self.corpus)
        if self.metrics:
            data["metrics"] = self.metrics
        if self.weights_sha256 is not None:
            data[WEIGHTS_HASH] = self.weights_sha256
        return data

    @classmethod
    def from_json(cls, data: dict) -> "RunSpec":
        """Raises ChatbotError, KeyError or TypeError for a config that is not one."""
        training = data.get("training", {})
        corpus = data.get("corpus")
        return cls(TokenizerSpec(**data["tokenizer"]), ModelConfig.from_dict(data["model"]),
                   TrainConfig.from_dict(training), CorpusInfo(**corpus) if corpus else None,
                   training.get("command", ""), data.get("metrics", {}), data.get(WEIGHTS_HASH))


def read_spec(folder: str | Path) -> RunSpec:
    """A checkpoint folder's config.json, checked; every problem names the file and the fix."""
    path = Path(folder) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChatbotError(f"{path} is missing: the checkpoint folder is incomplete; "
                           f"copy the whole folder or retrain.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChatbotError(f"{path}: not valid JSON ({exc}). The checkpoint is corrupt; retrain "
                           f"or copy it again.") from None
    except RecursionError:
        raise ChatbotError(f"{path}: not a checkpoint config (its JSON nests too deeply to read). "
                           f"The checkpoint is corrupt; retrain or copy it again.") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ChatbotError(f"{path}: not an lstm-chat checkpoint config (expected \"format\": "
                           f"\"{FORMAT}\").")
    for section in SECTIONS:
        if section in data and not isinstance(data[section], dict):
            raise ChatbotError(f"{path}: \"{section}\" must be a JSON object, got "
                               f"{type(data[section]).__name__} {short(data[section])}.")
    try:
        return RunSpec.from_json(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ChatbotError(f"{path}: missing or unknown setting {exc}.") from None
    except ChatbotError as exc:
        raise ChatbotError(f"{path}: {exc}") from None


def short(value, limit: int = 60) -> str:
    """A value as an error message quotes it: a string as it is, anything else as its repr."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
