"""Is the model a new user trains on the Train page worth chatting with? The user uploads a
~200 KB corpus, keeps every default (bpe tokenizer with a fitted vocabulary, size "auto")
and trains for the page's default budget; the same file then trains with each fixed preset
given the same budget from the command line (`train_lm.py --preset NAME --time-budget S`,
whose default tokenizer is char), one after the other.

For each: the saved model's validation nats/char and the share of the words in its sample
replies (8 messages of the corpus, the Chat page's sampling) that are words of the corpus,
with the verdict the page shows. Goal: the page's run reaches 90% corpus words, and a
validation no worse than the best preset's. `--reference MODEL` adds a row: the same judge
(the upload's messages and words) applied to a model trained for hours, such as the shipped
one, to show what the measure gives a well-trained model of that text. Each corpus's line
also gives the share the upload's own held-out text scores: the measure's ceiling, which the
verdict reads the share against (chatbot/chat/quality.py).

    python bench/train_page_quality.py corpora/default ../shared/bench/tinyshakespeare.txt   # README
    python bench/train_page_quality.py corpora/default --presets --budget 900 --reference models/default
    python bench/train_page_quality.py --smoke                                               # seconds
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
from app_pages.train_job import DEFAULT_BUDGET_MINUTES, DEFAULT_TOKENIZER, JobRequest, JobSlot  # noqa: E402
from chatbot.chat.quality import CorpusSample, judge  # noqa: E402
from chatbot.lm.checkpoint import load_checkpoint  # noqa: E402
from chatbot.text.corpus import load_corpus  # noqa: E402
from chatbot.train.presets import PRESETS  # noqa: E402


def upload(corpus: Path, kb: int, into: Path) -> Path:
    """About `kb` KB of the corpus, as one file a user could upload: whole conversations spread
    evenly over a chat corpus (a folder or a .jsonl), or the beginning of a text."""
    files = sorted(corpus.rglob("*.jsonl")) if corpus.is_dir() else [corpus]
    if corpus.suffix == ".txt":
        data = corpus.read_bytes()[:kb * 1024]
        out = into / corpus.name
        out.write_bytes(data[:data.rfind(b"\n") + 1])
        return out
    lines = [line for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    total = sum(len(line.encode()) + 1 for line in lines)
    every = max(1, round(total / (kb * 1024)))
    out = into / "upload.jsonl"
    out.write_text("\n".join(lines[::every]) + "\n", encoding="utf-8")
    return out


def result(out: Path, recipe: str) -> dict:
    config = json.loads((out / "config.json").read_text())
    quality = json.loads((out / "quality.json").read_text())
    m = config["model"]
    return {"recipe": recipe, "size": f"{m['num_layers']}×{m['hidden_size']}", "steps": config["metrics"]["steps"],
            "val": config["metrics"]["val_nats_per_char"], "words": quality["corpus_words"],
            "verdict": quality["verdict"].split(":")[0], "reply": quality["samples"][0]["reply"]}


def reference(model: Path, sample: CorpusSample) -> dict:
    """A trained model judged as the runs are: answers to the upload's messages, its words."""
    ckpt = load_checkpoint(model)
    q = judge(ckpt.model.eval(), ckpt.tokenizer, sample,
              {"val_nats_per_char": float("nan"), "val_bits_per_char": float("nan")})
    m = ckpt.spec.model
    return {"recipe": f"`{model}`, for reference", "size": f"{m.num_layers}×{m.hidden_size}",
            "steps": ckpt.spec.metrics.get("steps", 0), "val": float("nan"), "words": q.corpus_words,
            "verdict": q.verdict.split(":")[0], "reply": q.samples[0]["reply"] if q.samples else ""}


def page_run(corpus: Path, out: Path, data: Path, budget: float) -> dict:
    job = JobSlot(data).start(JobRequest(corpus, out, DEFAULT_TOKENIZER, None, None, budget))
    while job.snapshot().active:
        time.sleep(1.0)
    snap = job.snapshot()
    if snap.status != "finished":
        raise SystemExit(f"the page's run ended {snap.status}: {snap.error}")
    return {**result(out, "Train page, all defaults"), "evaluations": len(snap.samples)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpora", nargs="*", help="a chat folder or .jsonl, and/or a .txt")
    p.add_argument("--upload-kb", type=int, default=200)
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_MINUTES * 60, help="seconds per run")
    p.add_argument("--presets", nargs="*", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--reference", type=Path, metavar="MODEL",
                   help="also judge this trained model on each upload (its validation is not measured)")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.smoke:
            args.corpora = [smoke_corpus(tmp)]
            args.budget, args.presets = 3.0, ["tiny"]
        if not args.corpora:
            p.error("name at least one corpus")
        rows = []
        for n, name in enumerate(args.corpora):
            here = tmp / f"c{n}"
            here.mkdir()
            file = upload(Path(name), args.upload_kb, here)
            page = page_run(file, here / "page", here / "data", args.budget)
            fixed = []
            for preset in args.presets:
                run_train_lm(["--corpus", str(file), "--preset", preset, "--time-budget", str(args.budget)],
                             here / preset)
                fixed.append(result(here / preset, f"`--preset {preset}`"))
            sample = CorpusSample.read(load_corpus(file))  # the upload's words, messages and ceiling
            others = [reference(args.reference, sample)] if args.reference else []
            rows.append((Path(name).name, file.stat().st_size, page, fixed, others, sample.ceiling))
    print(f"{args.budget:g} s of training per run (the page's default budget is "
          f"{DEFAULT_BUDGET_MINUTES * 60:g} s); the page with its {DEFAULT_TOKENIZER} tokenizer, the presets "
          f"with the CLI's char; one run each, one after the other:\n")
    print("| corpus (upload) | recipe | size | steps | val nats/char | corpus words | verdict |")
    print("|---|---|---|---:|---:|---:|---|")
    for name, size, page, fixed, others, _ in rows:
        for r in [page, *fixed, *others]:
            words = "–" if r["words"] is None else f"{r['words']:.0%}"
            val = "–" if r["val"] != r["val"] else f"{r['val']:.3f}"  # NaN: not measured
            print(f"| {name} ({size / 1024:.0f} KB) | {r['recipe']} | {r['size']} | {r['steps']:,} | "
                  f"{val} | {words} | {r['verdict']} |")
    print()
    for name, _, page, fixed, _, ceiling in rows:
        best = min(fixed, key=lambda r: r["val"]) if fixed else None
        gap = f"; best preset {best['recipe']} {best['val']:.3f}" if best else ""
        print(f"- {name}: the page's run made {page['evaluations']} evaluations with samples; "
              f"validation {page['val']:.3f}{gap}. The upload's own held-out text (its last 10%) "
              f"scores {ceiling:.0%} corpus words. First sample reply: {page['reply'][:100]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
