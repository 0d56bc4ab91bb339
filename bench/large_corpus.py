"""A corpus larger than you would hold in a Python list: peak memory and time of tokenizing it
into the memory-mapped token cache and training a few steps, then of a --resume that reuses
the cache.

The corpus is generated (words drawn from a fixed list, one sentence per line; written in
chunks, never held whole) in a temporary folder. Each row is one `python train_lm.py` child,
its peak RSS read with wait4.

    python bench/large_corpus.py --mb 200      # README rows
    python bench/large_corpus.py --mb 1024 --tokenizer bpe
    python bench/large_corpus.py --smoke       # seconds, for the tests
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import run_measured  # noqa: E402

WORDS = ("the cell state carries memory from step to step while gates decide what to keep and what "
         "to forget a recurrent network reads one token at a time").split()


def write_corpus(path: Path, megabytes: float, seed: int = 0) -> int:
    rng = random.Random(seed)
    target, written = int(megabytes * 2**20), 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            block = "".join(" ".join(rng.choices(WORDS, k=rng.randint(5, 20))).capitalize() + ".\n"
                            for _ in range(2000))
            f.write(block)
            written += len(block)
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=200, help="corpus size in MB")
    p.add_argument("--tokenizer", default="char", choices=["char", "bpe", "unigram"])
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.mb = 2
    with tempfile.TemporaryDirectory() as tmp:
        corpus, out = Path(tmp) / "big.txt", Path(tmp) / "model"
        chars = write_corpus(corpus, args.mb)
        common = ["train_lm.py", "--corpus", str(corpus), "--out", str(out), "--tokenizer", args.tokenizer,
                  "--hidden-size", "128", "--layers", "1", "--seq-len", "64", "--batch-size", "16",
                  "--eval-every", "10", "--val-fraction", "0.001"]
        if args.tokenizer != "char":
            common += ["--vocab-size", "1000"]
        rows = []
        for label, extra in (("first run: tokenize + 10 steps", ["--max-steps", "10"]),
                             ("--resume: cache reused + 10 steps", ["--max-steps", "20", "--resume"])):
            done = run_measured(common + extra, Path(tmp) / f"{len(rows)}.log")
            if done.returncode != 0:
                raise SystemExit(f"train_lm.py failed:\n{done.output[-2000:]}")
            reused = "reused from" in done.output
            rows.append((label, done.seconds, done.peak_rss_mb, reused))
        cache = sum(f.stat().st_size for f in (out / "token-cache").iterdir())
    print(f"corpus {chars / 2**20:,.0f} MB ({chars:,} characters), {args.tokenizer} tokenizer, "
          f"token cache {cache / 2**20:,.0f} MB")
    print("| corpus | tokenizer | run | seconds | peak RSS MB | cache reused |")
    print("|---:|---|---|---:|---:|---|")
    for label, seconds, rss, reused in rows:
        print(f"| {args.mb:,.0f} MB | {args.tokenizer} | {label} | {seconds:.1f} | {rss:,.0f} | "
              f"{'yes' if reused else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
