"""Quality per wall-clock: the validation loss (nats/char, state carried through the held-out
text) that the recommended CPU recipe reaches in a fixed training budget, against a plain
2x256 LSTM (the `small` preset, fp32) given the same budget in the same run. Char tokenizer,
first 90% of the text trains, last 10% validates. Plots loss against seconds to a PNG.

Each run is the real command, `python train_lm.py --corpus FILE --tokenizer char --preset cpu
--time-budget 300 --out DIR`; the budget counts the evaluations made during training, and the
final evaluation follows it.

    python bench/quality_per_time.py ../shared/bench/tinyshakespeare.txt        # the README row
    python bench/quality_per_time.py FILE --smoke                               # seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from measure import ROOT, TrainingRun, per_second, run_train_lm

RECIPE = ("cpu preset", ["--preset", "cpu"])
BASELINE = ("plain 2×256 LSTM (small preset, fp32)", ["--preset", "small"])
TARGET = 1.47  # nats/char: what nanoGPT's baby GPT reaches on a GPU
NANOGPT_CPU = (272, 1.886)  # nanoGPT's documented CPU recipe: seconds, val nats/char


def train_once(corpus: str, out: Path, budget: float, flags: list[str], extra: list[str]) -> dict:
    run = run_train_lm(["--corpus", corpus, "--tokenizer", "char", *flags, *extra,
                        "--time-budget", str(budget)], out)
    return summarise(run)


def summarise(run: TrainingRun) -> dict:
    """A finished run's curves and numbers."""
    val = [(r["seconds"], r["val_nats_per_char"]) for r in run.log if "val_nats_per_char" in r]
    steps = run.steps
    return {"val": val, "train": [(r["seconds"], r["train_loss"]) for r in steps], "final": val[-1][1],
            "steps": steps[-1]["step"], "tokens_per_second": per_second(steps[-1]["tokens_seen"], steps[-1]["seconds"]),
            "peak_rss_mb": run.peak_rss_mb, "model": run.config["model"],
            "precision": run.config["training"]["precision"]}


def plot(runs: list[tuple[str, dict]], budget: float, png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    colours = {RECIPE[0]: "tab:blue", BASELINE[0]: "tab:orange"}
    seen = set()
    for name, r in runs:
        colour = colours[name]
        ts, losses = zip(*r["train"])
        k = max(1, len(losses) // 60)  # a running mean of the training loss, thin
        smooth = [statistics.fmean(losses[max(0, i - k):i + 1]) for i in range(len(losses))]
        ax.plot(ts, smooth, color=colour, alpha=0.25, linewidth=1)
        vs, vl = zip(*r["val"])
        ax.plot(vs, vl, "o-", color=colour, label=None if name in seen else f"{name}: validation")
        seen.add(name)
    ax.axhline(TARGET, color="tab:green", linestyle="--", label=f"target {TARGET} nats/char")
    ax.plot(*NANOGPT_CPU, "k*", markersize=12, label="nanoGPT CPU recipe (documented)")
    ax.set_xlabel("training seconds (2-core CPU)")
    ax.set_ylabel("loss, nats per character (faint: training)")
    ax.set_ylim(1.1, 2.6)
    ax.set_xlim(0, budget * 1.05)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Validation loss against wall-clock")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, bbox_inches="tight")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", help="a plain-text corpus, e.g. ../shared/bench/tinyshakespeare.txt")
    p.add_argument("--budget", type=float, default=300.0, help="training seconds per run")
    p.add_argument("--runs", type=int, default=3, help="runs of the recipe (the median is quoted)")
    p.add_argument("--baseline-runs", type=int, default=1)
    p.add_argument("--png", default=str(ROOT / "bench" / "results" / "quality_per_time.png"))
    p.add_argument("--work", help="folder for the runs' checkpoints (default: a temporary one)")
    p.add_argument("--smoke", action="store_true", help="a few seconds, small models")
    args = p.parse_args(argv)
    if args.smoke:
        args.budget, args.runs, args.baseline_runs = 3.0, 1, 1
    work = Path(args.work or tempfile.mkdtemp(prefix="quality-"))
    plan = [RECIPE] * args.runs
    for i in range(args.baseline_runs):  # interleaved, so machine drift hits both alike
        plan.insert(min(len(plan), 2 * i + 1), BASELINE)
    runs = []
    for i, (name, flags) in enumerate(plan):
        seed = str(1337 + sum(1 for n, _ in plan[:i] if n == name))
        smoke = ["--hidden-size", "32", "--embed-size", "0", "--eval-every", "5"] if args.smoke else []
        r = train_once(args.corpus, work / f"run{i}", args.budget, flags, ["--seed", seed, *smoke])
        runs.append((name, r))
        print(f"  {name} (seed {seed}): {r['final']:.4f} nats/char after {r['steps']} steps", flush=True)
    plot(runs, args.budget, Path(args.png))
    print(f"\n{args.corpus}: {args.budget:.0f} s of training per run; char tokenizer; last 10% validates")
    print("| recipe | model | runs | val nats/char (median) | each run | steps | tokens/s | peak RSS (MB) |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    medians = {}
    for name, _ in (RECIPE, BASELINE):
        mine = [r for n, r in runs if n == name]
        m = mine[0]["model"]
        medians[name] = statistics.median(r["final"] for r in mine)
        each = ", ".join(f"{r['final']:.4f}" for r in mine)
        print(f"| {name} | {m['num_layers']}×{m['hidden_size']} {m['cell']} {mine[0]['precision']} | "
              f"{len(mine)} | {medians[name]:.4f} | {each} | "
              f"{statistics.median(r['steps'] for r in mine):.0f} | "
              f"{statistics.median(r['tokens_per_second'] for r in mine):,.0f} | "
              f"{max(r['peak_rss_mb'] for r in mine):,.0f} |")
    print(f"recipe − baseline: {medians[RECIPE[0]] - medians[BASELINE[0]]:+.4f} nats/char; "
          f"target ≤ {TARGET}: {'met' if medians[RECIPE[0]] <= TARGET else 'not met'}; plot: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
