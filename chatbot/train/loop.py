"""Training: truncated BPTT with AdamW, warm-up + cosine decay, clipping, validation per
character, best-checkpoint saving, a clean stop on request and an exact --resume.

`train()` is the whole job (corpus -> tokenizer -> model -> loop -> checkpoints);
train_lm.py only turns command-line flags into its arguments.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..atomic import atomic_write
from ..errors import ChatbotError
from ..lm.checkpoint import load_checkpoint, save_checkpoint
from ..lm.model import COPY_SETTINGS, LanguageModel
from ..lm.spec import CorpusInfo, RunSpec, TokenizerSpec, TrainConfig
from ..text.corpus import Corpus, load_corpus
from ..text.token_cache import build_token_cache, cache_bytes, open_token_cache, token_cache_exists
from ..text.tokenizers import CharTokenizer, Tokenizer, fitted_vocab_size, load_tokenizer, train_tokenizer
from .data import Split, Streams, evaluate, split_ids
from .budget import plan_for_budget
from .device import checked_precision, pick_device, resolve_precision, training_loss
from .distributed import World, from_environment, leave
from .folder_lock import lock_folder
from .run_state import (RunState, has_run_state, load_run_state, read_run_spec, read_run_step,
                        save_run_state)

LOG_FILE = "train_log.jsonl"


def learning_rate(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up, then cosine from lr down to lr * min_lr_ratio as progress goes 0 -> 1."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


class Trainer:
    """Runs the optimisation loop for one invocation; `request_stop()` ends it cleanly
    (between steps, with everything saved) from a signal handler or another thread.

    Under torchrun (`world.active`) this rank trains its share of the streams through DDP;
    the carried state and random generators of all ranks are gathered into each resume
    point, so a run resumes exactly, under any number of processes that divides the batch."""

    def __init__(self, out: Path, model: LanguageModel, tokenizer: Tokenizer, split: Split,
                 spec: RunSpec, cfg: TrainConfig, device: torch.device, world: World = World()):
        """`spec` is what the checkpoints record; `cfg`, the settings this invocation runs
        with (a resume may change a few, see train())."""
        self.out, self.model, self.tokenizer, self.split = Path(out), model, tokenizer, split
        self.spec, self.cfg, self.device, self.world = spec, cfg, device, world
        self.on_event: Callable[[dict], None] = lambda event: None  # step and evaluation records
        self.streams = Streams(split.train, cfg.batch_size, cfg.seq_len, split.train_starts, cfg.seed)
        self.rows = world.share(self.streams.batch_size)
        self.local_batch = self.rows.stop - self.rows.start  # this rank's streams
        self.net = model
        if world.active:
            self.net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
            torch.manual_seed(cfg.seed + world.rank)  # same weights (DDP copies rank 0's), own dropout
        trained = [p for p in model.parameters() if p.requires_grad]  # all but a frozen LM's
        decay = [p for p in trained if p.dim() >= 2]
        no_decay = [p for p in trained if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))
        self.run = RunState(0, 0, 0.0, None, model.initial_state(self.local_batch), spec)
        self._stop = threading.Event()
        self._last_saved_step: int | None = None

    def request_stop(self):
        self._stop.set()

    def resume(self):
        self.run = load_run_state(self.out, self.model, self.optimizer, self.device, self.world.rank)
        if self.run.carried.batch_size != self.streams.batch_size:
            raise ChatbotError(f"the resume point carries {self.run.carried.batch_size} streams but "
                               f"this run has {self.streams.batch_size}; resume with the same --batch-size.")
        self.run.carried = self.run.carried.rows(self.rows)
        if self.world.is_main:
            _truncate_log(self.out / LOG_FILE, self.run.step)
        self.world.barrier()

    def fit(self) -> dict:
        cfg, run, model = self.cfg, self.run, self.model
        model.train()
        start = time.perf_counter()
        seconds_before = run.train_seconds
        steps_at_start = run.step
        main = self.world.is_main  # only rank 0 writes the log, the files and the progress bar
        bar = tqdm(total=cfg.max_steps, initial=run.step, unit="step", dynamic_ncols=True,
                   desc="training", disable=None if main else True)
        log = open(self.out / LOG_FILE if main else os.devnull, "a", encoding="utf-8")
        every = cfg.eval_seconds  # > 0: evaluations at equal shares of the time, not of the steps
        next_eval = every
        try:
            while True:
                elapsed = time.perf_counter() - start
                reason = ("finished" if cfg.max_steps is not None and run.step >= cfg.max_steps
                          else "time budget reached" if cfg.time_budget is not None and elapsed >= cfg.time_budget
                          else "stopped" if self._stop.is_set() else None)
                progress = max(run.step / cfg.max_steps if cfg.max_steps else 0.0,
                               elapsed / cfg.time_budget if cfg.time_budget else 0.0)
                stop, progress = self.world.agree(reason is not None, progress)
                if stop:
                    reason = reason or "stopped"  # another rank was asked to stop
                    break
                loss, lr = self._step(progress)
                run.step += 1
                run.tokens_seen += self.streams.batch_size * cfg.seq_len
                now = time.perf_counter() - start
                run.train_seconds = seconds_before + now
                rate = (run.step - steps_at_start) * self.streams.batch_size * cfg.seq_len / max(now, 1e-9)
                record = {"step": run.step, "train_loss": loss, "lr": lr,
                          "tokens_seen": run.tokens_seen, "seconds": round(run.train_seconds, 3)}
                log.write(json.dumps(record) + "\n")
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}")
                self.on_event({"type": "step", **record, "tokens_per_second": rate})
                due = now >= next_eval if every else run.step % cfg.eval_every == 0
                if every:  # every rank takes part: an evaluation saves a resume point together
                    due = self.world.agree(due, 0.0)[0]
                if due:
                    metrics = self._evaluate_and_save(log)
                    if every:  # the next share of the time after this evaluation (skip missed ones)
                        next_eval = (int((time.perf_counter() - start) / every) + 1) * every
                elif cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0:
                    self._save_resume_point(log)
            # A clean end (steps, time or a stop request) leaves a chat-able model and an exact
            # resume point. An exception leaves the files of the last evaluation untouched.
            if self._last_saved_step != run.step:
                metrics = self._evaluate_and_save(log)
        finally:
            bar.close()
            log.close()
            # The DDP wrapper is bound to the process group: drop it, so that leave() frees it
            # before destroying the group (train_lm.py keeps this Trainer alive until exit).
            self.net = self.model
        return {"reason": reason, **metrics}

    def _step(self, progress: float) -> tuple[float, float]:
        cfg, run = self.cfg, self.run
        x, y, epoch_start = self.streams.window(run.step)
        if epoch_start:
            run.carried = self.model.initial_state(self.local_batch)
        lr = learning_rate(cfg, run.step, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = x[self.rows].to(self.device), y[self.rows].to(self.device)
        loss, state = training_loss(self.net, x, y, run.carried, cfg.precision == "bf16",
                                    cfg.copy_loss_weight)
        mean_loss = self.world.mean(loss)  # every rank sees the same loss, so all stop on a NaN
        if not torch.isfinite(mean_loss):
            if run.best_val is None:  # no evaluation has saved a checkpoint in this run yet
                raise ChatbotError(f"the loss became {mean_loss.item()} at step {run.step + 1}; "
                                   f"stopping. No checkpoint was saved (the run diverged before its "
                                   f"first evaluation). Lower --lr and start again.")
            raise ChatbotError(f"the loss became {mean_loss.item()} at step {run.step + 1}; stopping. "
                               f"The last good checkpoint is kept. Lower --lr and resume.")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # under DDP the gradients are averaged over the ranks here
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        run.carried = state.map(torch.Tensor.detach).float()
        return mean_loss.item(), lr

    def _evaluate_and_save(self, log) -> dict:
        run = self.run
        self._last_saved_step = run.step
        metrics = evaluate(self.model, self.split, self.cfg.seq_len, self.device)
        metrics.update(steps=run.step, tokens_seen=run.tokens_seen,
                       train_seconds=round(run.train_seconds, 3))
        log.write(json.dumps({"step": run.step, **{k: metrics[k] for k in
                              ("val_nats_per_char", "val_bits_per_char")},
                              "seconds": round(run.train_seconds, 3)}) + "\n")
        log.flush()
        self.on_event({"type": "eval", **metrics})
        improved = run.best_val is None or metrics["val_nats_per_char"] < run.best_val
        if improved and self.world.is_main:
            with self._writing("best checkpoint"):
                save_checkpoint(self.out, self.model, self.tokenizer, replace(self.spec, metrics=metrics))
        if improved:
            run.best_val = metrics["val_nats_per_char"]
        self._save_resume_point(log)
        if self.world.is_main:
            tqdm.write(f"step {run.step}: val {metrics['val_nats_per_char']:.4f} nats/char "
                       f"({metrics['val_bits_per_char']:.4f} bits/char)"
                       + (" - saved best" if improved else ""))
        return metrics

    def _save_resume_point(self, log) -> None:
        """Every rank takes part (their carried states and generators are gathered); rank 0 writes."""
        carried = self.run.carried.map(lambda t: self.world.gather_rows(t, dim=1))
        rngs = self.world.gather(torch.get_rng_state())
        if not self.world.is_main:
            return
        log.flush()  # the log must reach at least as far as the resume point
        with self._writing("resume point"):
            save_run_state(self.out, self.model, self.optimizer, replace(self.run, carried=carried),
                           rngs if self.world.active else None)

    @contextlib.contextmanager
    def _writing(self, what: str):
        """A failed write (full disk, lost permission) stops the run with a clear message; the
        previous files stay whole because every write goes to a new file first."""
        try:
            yield
        except OSError as exc:
            raise ChatbotError(f"could not write the {what} in {self.out} ({exc.strerror or exc}). "
                               f"The previous one is kept. Free some disk space or fix the "
                               f"folder's permissions, then continue with --resume.") from None


def _truncate_log(path: Path, step: int):
    """Drop log lines written after the resume point, so the log reads as one run."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):  # a line torn by a kill mid-write
            continue
    atomic_write(path, ("\n".join(keep) + "\n" if keep else "").encode())


def _evaluated_at(path: Path, step: int) -> bool:
    """Whether the log holds an evaluation at `step` (a clean end evaluates; a kill right
    after a resume point does not, and --resume at that step then does it)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False
    for line in reversed(lines):
        try:
            record = json.loads(line)
            if record["step"] == step and "val_nats_per_char" in record:
                return True
            if record["step"] < step:
                return False
        except (ValueError, KeyError, TypeError):
            continue
    return False


def check_out_folder(out: Path, resume: bool):
    out = Path(out)
    if not resume and has_run_state(out):
        raise ChatbotError(f"{out} already holds a training run. Add --resume to continue it, or "
                           f"choose another --out (nothing was overwritten).")
    if out.exists() and not out.is_dir():
        raise ChatbotError(f"--out {out} is a file; give a folder.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test.{os.getpid()}.{threading.get_ident()}"  # never another run's
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise ChatbotError(f"cannot write to --out {out} ({exc.strerror}). Choose a folder you "
                           f"can write to.") from None


def check_disk_space(out: Path, model: LanguageModel, token_cache: int = 0) -> None:
    """Refuse to start a run whose token cache or checkpoints cannot fit, instead of failing
    hours later. `token_cache`: bytes the cache still has to be written."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    # best checkpoint (1x) + resume snapshot (weights and two Adam moments, 3x), with the
    # previous copy of each still on disk while the new one is written: 8x, plus slack.
    need = 8 * weights + token_cache + 2**20
    free = shutil.disk_usage(out).free
    if free < need:
        cache = f" and its token cache {token_cache / 1e6:,.1f} MB" if token_cache else ""
        raise ChatbotError(f"only {free / 1e6:,.1f} MB free where --out {out} is, but this model's "
                           f"checkpoints need about {8 * weights / 1e6:,.1f} MB{cache}. Free some "
                           f"space or choose another --out.")


SENTENCEPIECE_SAMPLE_CHARS = 10_000_000  # unigram training takes ~50 bytes of memory a character


def tokenizer_texts(corpus: Corpus, kind: str) -> Iterator[str]:
    """A character vocabulary needs every character; SentencePiece learns its pieces as well
    from an even sample of about 10M characters (and falls back to bytes for any it missed)."""
    return corpus.texts() if kind == "char" else corpus.sample_lines(SENTENCEPIECE_SAMPLE_CHARS)


def train(spec: RunSpec, out: str | Path, resume: bool = False, resume_overrides: dict | None = None,
          on_event: Callable[[dict], None] | None = None,
          on_trainer: Callable[[Trainer], None] | None = None) -> dict:
    """Train (or resume) the run `spec` describes in `out`; returns the final metrics.

    `spec` names the corpus, the tokenizer, the model (its vocab_size is the tokenizer's) and
    the training settings. On --resume the run's saved spec is used, except the corpus path
    when one is given and `resume_overrides` (max_steps, time_budget, device,
    checkpoint_every: what may change between invocations). Under torchrun every rank calls
    this; see chatbot/train/distributed.py."""
    out = Path(out)
    lock = None
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) == 1 and (not resume or out.is_dir()):
            # One run per folder, taken before anything is read: a second run into the same
            # --out (or a --resume of a run still going) would mix config, token cache and
            # log. Held until the run ends. (Under torchrun rank 0 takes it once the group is up.)
            check_out_folder(out, resume=True)  # a folder we can write; the run check follows
            lock = lock_folder(out)
        return _locked_train(spec, out, resume, resume_overrides, on_event, on_trainer, lock)
    finally:
        if lock is not None:
            lock.release()


def _locked_train(spec: RunSpec, out: Path, resume: bool, resume_overrides: dict | None,
                  on_event, on_trainer, lock) -> dict:
    cfg, given = spec.training, spec.corpus
    if resume:
        spec, step = read_run_spec(out), read_run_step(out)
        allowed = {"max_steps", "time_budget", "device", "checkpoint_every"}
        cfg = replace(spec.training, **{k: v for k, v in (resume_overrides or {}).items() if k in allowed})
        if cfg.max_steps is not None and (step > cfg.max_steps or (
                step == cfg.max_steps and _evaluated_at(out / LOG_FILE, step))):
            raise ChatbotError(f"the run in {out} is already at step {step:,}, "
                               f"{'past' if step > cfg.max_steps else 'at'} --max-steps "
                               f"{cfg.max_steps:,}: there is nothing to train. Give a larger "
                               f"--max-steps to continue it.")
    elif given is None:
        raise ChatbotError("--corpus is required (a .txt file, a .jsonl chat file or a folder).")
    corpus = Path((given or spec.corpus).path)
    world, device = from_environment(pick_device(cfg.device))
    try:
        if world.is_main:
            if lock is None:  # under torchrun: rank 0 holds the folder for the job
                check_out_folder(out, resume=True)
                lock = lock_folder(out)
            check_out_folder(out, resume)
        trainer = _prepare(spec, cfg, corpus, out, resume, world, device)
        trainer.on_event = on_event or trainer.on_event
        if on_trainer:
            on_trainer(trainer)
        result = trainer.fit()
        world.barrier()  # leave the group together
        return result
    except torch.distributed.DistError as exc:
        raise ChatbotError(
            f"rank {world.rank}: another training process failed or lost its connection "
            f"({str(exc).splitlines()[0][:200]}), so the whole job stops. The last resume point in "
            f"{out} is intact: fix the cause (see that process's error above) and run the same "
            f"torchrun command with --resume.") from None
    finally:
        leave(world)
        if lock is not None:
            lock.release()


def _prepare(spec: RunSpec, cfg: TrainConfig, corpus: Path, out: Path, resume: bool, world: World,
             device: torch.device) -> Trainer:
    """Corpus -> tokenizer -> token cache -> model: a Trainer ready to fit (or resume)."""
    asked = cfg.precision
    cfg = replace(cfg, precision=resolve_precision(cfg.precision, device))
    torch.manual_seed(cfg.seed)
    text = load_corpus(corpus)
    kind = spec.tokenizer.kind
    if resume:
        if text.sha256 != spec.corpus.sha256:
            raise ChatbotError(f"the corpus at {corpus} changed since this run started (sha256 "
                               f"differs), so --resume cannot continue it exactly. Restore the "
                               f"corpus or start a new run in another --out.")
    if not resume and kind in ("bpe", "unigram") and spec.tokenizer.vocab_size is None:
        distinct = len(CharTokenizer.train(text.texts()).chars)  # every rank computes the same size
        spec = replace(spec, tokenizer=replace(spec.tokenizer, vocab_size=fitted_vocab_size(distinct, text.characters)))
    init = None
    if not resume and cfg.init_from:
        init = load_checkpoint(cfg.init_from)
        kind = init.spec.tokenizer.kind
        spec = replace(spec, tokenizer=init.spec.tokenizer,
                       model=replace(init.spec.model, **{name: getattr(spec.model, name) for name in COPY_SETTINGS}))
        if world.is_main:
            init.tokenizer.save(out)
    elif not resume and world.is_main:  # one tokenizer for every rank: rank 0 trains it, the others read it
        train_tokenizer(kind, tokenizer_texts(text, kind), spec.tokenizer.vocab_size).save(out)
    world.barrier()
    tokenizer = load_tokenizer(out, kind)
    model_cfg = spec.model if resume else replace(spec.model, vocab_size=tokenizer.vocab_size)
    model = LanguageModel(model_cfg).to(device)
    if init is not None:
        with torch.no_grad():  # the copy head, if any, is new and keeps its initial weights
            model.load_state_dict(init.model.state_dict(), strict=False)
    if cfg.freeze_lm:
        if model.copy is None:
            raise ChatbotError("--freeze-lm trains only the copy head, and this model has none: "
                               "add --copy-window N (e.g. 512).")
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("copy."))
    if cfg.copy_loss_weight and model.copy is None:
        raise ChatbotError("--copy-loss-weight weighs the targets a copy head could copy, and this "
                           "model has none: add --copy-window N (e.g. 512), or leave the weight at 0.")
    cfg = replace(cfg, precision=checked_precision(asked, cfg.precision, model, device))
    reused = token_cache_exists(text, tokenizer, out)
    if world.is_main:  # the others wait, then map the same file
        check_disk_space(out, model, 0 if reused else cache_bytes(text, tokenizer))
        build_token_cache(text, tokenizer, out)
    world.barrier()
    tokens = open_token_cache(text, tokenizer, out, reused)
    ids = tokens.ids
    split = split_ids(ids, cfg.val_fraction, tokenizer, cfg.seq_len, tokens.doc_starts)
    if not resume and cfg.fit_budget and cfg.time_budget and init is None:
        model_cfg, cfg = _fit_budget(model_cfg, cfg, len(split.train), world, device)
        if model_cfg != model.config:
            torch.manual_seed(cfg.seed)  # the weights a run of this size would start from
            model = LanguageModel(model_cfg).to(device)
            cfg = replace(cfg, precision=checked_precision(asked, cfg.precision, model, device))
            if world.is_main:
                check_disk_space(out, model)
    if not resume:
        spec = replace(spec, model=model_cfg, tokenizer=TokenizerSpec(**tokenizer.describe()), training=cfg,
                       corpus=CorpusInfo(str(corpus), text.sha256, [str(p) for p in text.paths],
                                         text.characters, len(ids)))
    trainer = Trainer(out, model, tokenizer, split, spec, cfg, device, world)
    if resume:
        trainer.resume()
    if world.is_main:
        tqdm.write(f"{model_cfg.cell} {model_cfg.num_layers}x{model_cfg.hidden_size}, "
                   f"{model.num_parameters():,} parameters, {tokenizer.kind} tokenizer "
                   f"({tokenizer.vocab_size} tokens); {len(split.train):,} train / {len(split.val):,} "
                   f"validation tokens ({len(ids) / max(1, text.characters):.3f} tokens/char); "
                   f"{trainer.streams.batch_size} streams x {cfg.seq_len}; device {device}"
                   + (f"; {world.size} processes, {trainer.streams.batch_size // world.size} streams "
                      f"each" if world.active else "")
                   + (f"; resuming at step {trainer.run.step}" if resume else "")
                   + f"\ntoken ids {'reused from' if tokens.reused else 'cached in'} {tokens.path}")
    return trainer


def _fit_budget(model_cfg, cfg: TrainConfig, train_tokens: int, world: World, device: torch.device):
    """Time this machine now and fit the run to its budget (chatbot/train/budget.py): the
    model size too when cfg.fit_budget is "size". Under torchrun every rank takes rank 0's plan."""
    size = None if cfg.fit_budget == "size" else (model_cfg.num_layers, model_cfg.hidden_size)
    plan = plan_for_budget(cfg.time_budget, model_cfg.vocab_size, train_tokens, cfg.batch_size, cfg.seq_len,
                           cfg.precision, device, model_cfg.cell, size)
    numbers = torch.tensor([plan.num_layers, plan.hidden_size, plan.batch_size, plan.warmup_steps,
                            -1.0 if plan.dropout is None else plan.dropout], dtype=torch.float64)
    layers, hidden, batch, warmup, dropout = world.gather(numbers)[0].tolist()
    if size is None:
        model_cfg = replace(model_cfg, num_layers=int(layers), hidden_size=int(hidden), dropout=dropout)
        batch = int(batch) - int(batch) % world.size or world.size
    else:
        batch = cfg.batch_size
    cfg = replace(cfg, batch_size=batch, warmup_steps=int(warmup), eval_seconds=plan.eval_seconds,
                  plan=plan.describe(cfg.time_budget))
    if world.is_main:
        tqdm.write(f"fitted to the {cfg.time_budget:.0f} s budget: {cfg.plan}")
    return model_cfg, cfg
