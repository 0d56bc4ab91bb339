"""Does the Train page train at the command line's speed? The same corpus, size and budget,
run as `python train_lm.py` and the way the page runs it (app_pages/train_job.py: a
train_lm.py child started by the server's slot, its folder read once a second as the page's
progress panel does, in this process), alternated in one sitting, medians reported. Tokens/s
is each run's own, from its train_log.jsonl: tokens trained / seconds of training after its
first step (which also pays for warming up).

    python bench/train_page_speed.py --corpus corpora/default --preset small --budget 60   # the README rows
    python bench/train_page_speed.py --smoke                                                # seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from measure import ROOT, run_train_lm, smoke_corpus

sys.path.insert(0, str(ROOT))
from app_pages.train_job import JobRequest, JobSlot  # noqa: E402
from chatbot.train.presets import PRESETS  # noqa: E402


def rate(out: Path) -> tuple[int, float]:
    """(steps, tokens/s of training) from a run's log, from the end of its first step to its
    last (the first step also pays for warming up)."""
    steps = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    trained = [r for r in steps if "train_loss" in r]
    first, last = trained[0], trained[-1]
    seconds = last["seconds"] - first["seconds"]
    return last["step"], (last["tokens_seen"] - first["tokens_seen"]) / seconds if seconds > 0 else float("nan")


def page_run(corpus: str, out: Path, data: Path, preset: str, budget: float) -> tuple[int, float, int]:
    job = JobSlot(data).start(JobRequest(Path(corpus), out, "char", None, PRESETS[preset], budget))
    polls = 0
    while job.snapshot().active:  # what the progress panel does, once a second
        polls += 1
        time.sleep(1.0)
    snap = job.snapshot()
    if snap.status not in ("finished", "cancelled"):
        raise SystemExit(f"the page's run failed: {snap.error}")
    return (*rate(out), polls)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=str(ROOT / "corpora" / "default"))
    p.add_argument("--preset", default="cpu", choices=list(PRESETS))
    p.add_argument("--budget", type=float, default=60.0, help="seconds of training per run")
    p.add_argument("--repeats", type=int, default=3, help="runs of each path, alternated")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    runs = {"cli": [], "page": []}
    polls = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.smoke:
            args.corpus, args.preset, args.budget, args.repeats = smoke_corpus(tmp), "tiny", 2.0, 1
        for i in range(args.repeats):  # alternated, so that both paths see the same machine
            run_train_lm(["--corpus", args.corpus, "--preset", args.preset, "--time-budget", str(args.budget)],
                         tmp / f"cli{i}")
            runs["cli"].append(rate(tmp / f"cli{i}"))
            *page, n = page_run(args.corpus, tmp / f"page{i}", tmp / f"data{i}", args.preset, args.budget)
            runs["page"].append(tuple(page))
            polls += n
    preset = PRESETS[args.preset]
    median = {k: (statistics.median(s for s, _ in v), statistics.median(r for _, r in v)) for k, v in runs.items()}
    print(f"{Path(args.corpus).name}; preset {args.preset} ({preset.num_layers}×{preset.hidden_size}); "
          f"{args.budget:g} s budget each; {args.repeats} runs of each path, alternated (medians); "
          f"{torch.get_num_threads()} torch threads; the page's folders read {polls} times:\n")
    print("| path | steps | tokens/s (after step 1) | of the command line |")
    print("|---|---:|---:|---:|")
    cli_steps, cli_rate = median["cli"]
    page_steps, page_rate = median["page"]
    print(f"| `python train_lm.py` | {cli_steps:,.0f} | {cli_rate:,.0f} | 100% |")
    print(f"| Train page (child process, followed) | {page_steps:,.0f} | {page_rate:,.0f} | {page_rate / cli_rate:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
