"""Train a stacked LSTM (or GRU / RNN) language model on a corpus: the command-line face of
chatbot.train.loop.train(). Run `python train_lm.py --help` for every option."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

from tqdm import tqdm

from chatbot.atomic import atomic_write
from chatbot.chat.quality import CorpusSample, Quality, SampleLog, judge, write_quality
from chatbot.errors import ChatbotError
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.lm.model import CELLS, COPY_SETTINGS, ModelConfig
from chatbot.lm.spec import PRECISIONS, CorpusInfo, RunSpec, TokenizerSpec, TrainConfig, read_spec
from chatbot.text.corpus import load_corpus
from chatbot.text.tokenizers import KINDS
from chatbot.train.budget import RECIPE
from chatbot.train.loop import train
from chatbot.train.presets import PRESETS

MODEL_FLAGS = {"cell": "cell", "layers": "num_layers", "hidden_size": "hidden_size",
               "embed_size": "embed_size", "dropout": "dropout", "copy_window": "copy_window",
               "copy_key_size": "copy_key_size", "copy_order": "copy_order"}
SIZE_FLAGS = {"layers", "hidden_size", "embed_size"}
RUN_FILE = "run.json"  # the run's settings as it starts (config.json comes with the first save)
TRAIN_FLAGS = ("seq_len", "batch_size", "lr", "min_lr_ratio", "warmup_steps", "weight_decay", "grad_clip",
               "max_steps", "time_budget", "eval_every", "checkpoint_every", "val_fraction", "seed", "device", "precision",
               "init_from", "freeze_lm", "copy_loss_weight")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split(":")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = TrainConfig()
    p.add_argument("--corpus", help="a .txt file, a chat .jsonl file, or a folder of them "
                   "(optional with --resume)")
    p.add_argument("--out", required=True, help="checkpoint folder to write (or resume)")
    p.add_argument("--resume", action="store_true", help="continue the run found in --out exactly")
    p.add_argument("--preset", choices=list(PRESETS),
                   help="a tested recipe of model and training settings (see README); flags given "
                        "explicitly override it. cpu: the best loss per minute on a CPU")
    g = p.add_argument_group("tokenizer")
    g.add_argument("--tokenizer", choices=KINDS, default="char")
    g.add_argument("--vocab-size", type=int, help="SentencePiece vocabulary size (bpe/unigram); default: "
                   "fitted to the corpus (what it must hold, plus 1 piece per 200 characters, 300 to 2,000)")
    g = p.add_argument_group("model")
    g.add_argument("--cell", choices=list(CELLS), default="lstm")
    g.add_argument("--layers", type=int, default=2, help="stacked recurrent layers")
    g.add_argument("--hidden-size", type=int, default=256)
    g.add_argument("--embed-size", type=int, default=0, help="0 = hidden size (ties the head)")
    g.add_argument("--dropout", type=float, default=0.1, help="between layers and before the head")
    g.add_argument("--copy-window", type=int, default=ModelConfig.copy_window,
                   help="a copy head over the last N tokens, which lets a reply repeat a name or word "
                        "from earlier in the chat (0: none; the default model uses 512)")
    g.add_argument("--copy-key-size", type=int, default=ModelConfig.copy_key_size, help="the copy head's key size")
    g.add_argument("--copy-order", type=int, choices=(1, 2), default=ModelConfig.copy_order,
                   help="2: the copy head matches the last two tokens read, not only the last one, "
                        "which follows a name split into many pieces more surely")
    g = p.add_argument_group("training")
    g.add_argument("--seq-len", type=int, default=d.seq_len, help="BPTT window in tokens")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="parallel text streams")
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (AdamW)")
    g.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio,
                   help="the cosine schedule ends at lr x this")
    g.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--grad-clip", type=float, default=d.grad_clip)
    g.add_argument("--max-steps", type=int, default=d.max_steps,
                   help="total optimizer steps of the run, counted across resumes "
                        "(no step limit when only --time-budget is given)")
    g.add_argument("--time-budget", type=float,
                   help="stop after this many seconds of training. The run first times a few steps "
                        "here and now, then fits the warm-up and the evaluations (8, at equal shares "
                        "of the budget) to the steps it will get; with no size given (--preset, "
                        "--layers, --hidden-size) it also picks the size and dropout")
    g.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between validations")
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="steps between resume points (a kill loses at most this many steps); "
                        "0 = at each evaluation")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="the last fraction of the text that validates")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--init-from", default=d.init_from, metavar="MODEL_DIR",
                   help="start from a trained model's weights and tokenizer (its size is kept; "
                        "--copy-window adds a copy head to it)")
    g.add_argument("--freeze-lm", action="store_true",
                   help="with --init-from and --copy-window: train only the copy head")
    g.add_argument("--copy-loss-weight", type=float, default=d.copy_loss_weight,
                   help="with a copy head: targets the head could copy from its window count "
                        "1 + this x (1 - their probability) times in the loss (0: off)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default=d.device)
    g.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="bf16: matrix products in bfloat16 (about 1.8x faster on CPUs with "
                        "AVX512-BF16/AMX and on recent GPUs); weights stay fp32")
    args = p.parse_args(argv)
    args.explicit = {a.lstrip("-").split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}
    if args.preset:
        preset = PRESETS[args.preset]
        settings = {**preset.model_settings(), **preset.train_settings()}
        for flag, name in {**{k: k for k in TRAIN_FLAGS}, **MODEL_FLAGS}.items():
            if name in settings and flag not in args.explicit:
                setattr(args, flag, settings[name])
    if args.time_budget is not None and "max_steps" not in args.explicit:
        args.max_steps = None  # a time budget alone decides when to stop
    if args.init_from and not args.resume:  # fine-tuning keeps the copy head unless told otherwise
        adopt_copy_head(args)
    args.fit_budget = ""
    if args.time_budget is not None and not args.resume:
        if not args.preset and not args.explicit & SIZE_FLAGS and not args.init_from:
            args.fit_budget = "size"  # the budget decides the recipe (chatbot/train/budget.py)
            for flag, value in RECIPE.items():
                if flag not in args.explicit:
                    setattr(args, flag, value)
        elif not args.explicit & {"warmup_steps", "eval_every"}:
            args.fit_budget = "schedule"
    return args


def adopt_copy_head(args) -> None:
    """--init-from a model with a copy head: keep its window, key size and order (and so its
    trained head) where --copy-window / --copy-key-size / --copy-order were not given. A folder that cannot be read
    is left to the training loop, which names the problem."""
    try:
        model = read_spec(args.init_from).model
    except ChatbotError:
        return
    for name in COPY_SETTINGS:
        if name not in args.explicit:
            setattr(args, name, getattr(model, name))


def stop_with_parent(trainers: list) -> None:
    """For a run the app started: stop cleanly (saving) when the app's server goes away, so
    no training process is left behind it. Polls the parent's pid twice a second."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        print("the app that started this run has gone; stopping and saving", file=sys.stderr)
        if trainers:
            trainers[0].request_stop()
        else:
            os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent watch").start()


class Progress:
    """Rank 0's samples and verdict: a reply to a message of the corpus at every evaluation
    (OUT/samples.jsonl), and at the end the saved model's verdict (OUT/quality.json)."""

    def __init__(self, out: str, resume: bool):
        self.out, self.resume = Path(out), resume
        self.trainer = self.sample = self.log = None

    def attach(self, trainer) -> None:
        self.trainer = trainer
        spec = trainer.spec
        atomic_write(self.out / RUN_FILE, json.dumps(spec.to_json(), indent=1).encode())
        self.sample = CorpusSample.read(load_corpus(spec.corpus.path))
        self.log = SampleLog(self.out, self.sample, trainer.run.step if self.resume else None)

    def on_event(self, event: dict) -> None:
        if event["type"] == "eval" and self.log is not None:
            record = self.log.add(self.trainer.model, self.trainer.tokenizer, event)
            share = "" if record["corpus_words"] is None else f" ({record['corpus_words']:.0%} corpus words)"
            tqdm.write(f"sample at step {record['step']}{share}: {record['prompt'].strip()!r} -> "
                       f"{record['reply'][:160]!r}")

    def finish(self, result: dict) -> Quality | None:
        if self.sample is None:
            return None
        ckpt = load_checkpoint(self.out)
        quality = judge(ckpt.model, ckpt.tokenizer, self.sample, ckpt.spec.metrics or result)
        quality.reason = result["reason"]
        write_quality(self.out, quality)
        return quality


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    trainers = []

    def stop_gently(signum, frame):
        if not trainers:
            raise KeyboardInterrupt
        print("\nstopping after this step and saving (Ctrl-C again to quit without saving)...",
              file=sys.stderr)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        trainers[0].request_stop()

    signal.signal(signal.SIGINT, stop_gently)
    if os.environ.get("LSTM_CHAT_STOP_WITH_PARENT"):
        stop_with_parent(trainers)
    main_rank = os.environ.get("RANK", "0") == "0"
    progress = Progress(args.out, args.resume) if main_rank else None

    def attach(trainer):
        trainers.append(trainer)
        if progress:
            progress.attach(trainer)

    try:
        spec = RunSpec(TokenizerSpec(args.tokenizer, args.vocab_size),
                       ModelConfig(**{name: getattr(args, flag) for flag, name in MODEL_FLAGS.items()}),
                       TrainConfig(**{k: getattr(args, k) for k in TRAIN_FLAGS}, fit_budget=args.fit_budget),
                       CorpusInfo(args.corpus) if args.corpus else None,
                       command=shlex.join(["python", "train_lm.py", *argv]))
        overrides = {k: getattr(args, k) for k in ("max_steps", "time_budget", "device", "checkpoint_every")
                     if k in args.explicit}
        result = train(spec, args.out, resume=args.resume, resume_overrides=overrides,
                       on_trainer=attach, on_event=progress.on_event if progress else None)
        quality = progress.finish(result) if progress else None
    except ChatbotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; the last saved checkpoint in {args.out} is kept "
              f"(continue with --resume).", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun, rank 0 reports for the job
    print(f"{result['reason']} at step {result['steps']}: validation "
          f"{result['val_nats_per_char']:.4f} nats/char, {result['val_bits_per_char']:.4f} bits/char. "
          f"Chat with it: python -m chatbot chat --model {args.out}")
    if quality is not None:
        share = "no words" if quality.corpus_words is None else f"{quality.corpus_words:.0%} corpus words"
        print(f"verdict ({share} in {len(quality.samples)} sample replies): {quality.verdict}")
    if result["reason"] == "stopped":
        print(f"continue with: python train_lm.py --out {args.out} --resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
