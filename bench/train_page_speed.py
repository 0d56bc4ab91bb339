"""Does the Train page train at the command line's speed? The same corpus, size and budget,
run once as `python train_lm.py` and once the way the page runs it (app_pages/train_job.py:
a train_lm.py child started by the server's slot, its folder read once a second as the page's
progress panel does, in this process), one after the other in one sitting. Tokens/s is each
run's own: tokens trained / seconds of training, from its train_log.jsonl.

    python bench/train_page_speed.py --corpus corpora/default            # the README row
    python bench/train_page_speed.py --smoke                             # seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from measure import ROOT, run_train_lm, smoke_corpus

sys.path.insert(0, str(ROOT))
from app_pages.train_job import JobRequest, JobSlot  # noqa: E402
from chatbot.train.presets import PRESETS  # noqa: E402


def rate(out: Path) -> tuple[int, float]:
    """(steps, tokens/s of training) from a run's log."""
    steps = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    last = [r for r in steps if "train_loss" in r][-1]
    return last["step"], last["tokens_seen"] / last["seconds"]


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
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.smoke:
            args.corpus, args.preset, args.budget = smoke_corpus(tmp), "tiny", 2.0
        cli = run_train_lm(["--corpus", args.corpus, "--preset", args.preset, "--time-budget", str(args.budget)],
                           tmp / "cli")
        cli_steps, cli_rate = rate(tmp / "cli")
        page_steps, page_rate, polls = page_run(args.corpus, tmp / "page", tmp / "data", args.preset, args.budget)
    preset = PRESETS[args.preset]
    print(f"{Path(args.corpus).name}; preset {args.preset} ({preset.num_layers}×{preset.hidden_size}); "
          f"{args.budget:g} s budget each, one after the other; the page's folder read {polls} times:\n")
    print("| path | steps | tokens/s | of the command line |")
    print("|---|---:|---:|---:|")
    print(f"| `python train_lm.py` | {cli_steps:,} | {cli_rate:,.0f} | 100% |")
    print(f"| Train page (child process, followed) | {page_steps:,} | {page_rate:,.0f} | {page_rate / cli_rate:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
