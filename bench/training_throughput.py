"""Training throughput of each preset: tokens/s of the real `train_lm.py`, the matrix-multiply
GFLOP/s that implies, as a fraction of the fp32 (and bf16) matmul rate measured here on the
same machine, and the training process's peak RSS.

FLOPs per token are counted from the shapes: forward = 2 x (every recurrent weight + the head),
training = 3 x forward (the backward pass does twice the forward's products). Element-wise
gate arithmetic is not counted, so the fraction is a lower bound on how busy the cores are.

    python bench/training_throughput.py --corpus corpora/default          # the README table
    python bench/training_throughput.py --corpus corpora/default --smoke  # seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from measure import ROOT, TrainingRun, per_second, ratio, run_train_lm, training_rate

sys.path.insert(0, str(ROOT))
from chatbot.train.presets import PRESETS  # noqa: E402


def matmul_rate(dtype: torch.dtype, sizes=(1024, 2048, 3072), repeats: int = 7) -> dict[str, float]:
    """FLOP/s of square matrix products through torch's BLAS (`a @ b`) and through oneDNN
    (the library nn.LSTM uses on a CPU): each the best size's median of several runs.
    They differ: on AMD CPUs MKL's sgemm takes its AVX2 path while oneDNN uses AVX-512."""
    import torch.utils.mkldnn as onednn

    rates = {"blas": 0.0, "onednn": 0.0}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        linear = torch.nn.Linear(n, n, bias=False)
        linear.weight.data = b.T.contiguous()
        a_, b_ = a.to(dtype), b.to(dtype)
        fused = onednn.to_mkldnn(linear, dtype)
        a_onednn = a.to_mkldnn(dtype)
        runs = {"blas": lambda: a_ @ b_, "onednn": lambda: fused(a_onednn)}
        for name, run in runs.items():
            run()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            rate = per_second(2 * n**3, statistics.median(times))
            rates[name] = max(rates[name], rate) if rate == rate else rates[name]  # NaN: no reading
    return rates


def training_flops_per_token(model: dict) -> float:
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[model["cell"]]
    E, H, V = model["embed_size"], model["hidden_size"], model["vocab_size"]
    recurrent = sum(gates * H * ((E if i == 0 else H) + H) for i in range(model["num_layers"]))
    return 3 * 2 * (recurrent + H * V)


def measure_preset(name: str, corpus: str, budget: float, out: Path, extra: list[str]) -> dict:
    run = run_train_lm(["--corpus", corpus, "--preset", name, "--time-budget", str(budget),
                        "--max-steps", "1000000", "--eval-every", "1000000", *extra], out)
    return preset_result(run)


def preset_result(run: TrainingRun) -> dict:
    rate = training_rate(run.steps)  # after the first steps (allocation, oneDNN set-up)
    return {"tokens_per_second": rate, "peak_rss_mb": run.peak_rss_mb, "model": run.config["model"],
            "precision": run.config["training"]["precision"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="corpora/default")
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--budget", type=float, default=20.0, help="training seconds per run")
    p.add_argument("--repeats", type=int, default=3, help="runs per preset; medians are shown")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    names = args.presets.split(",")
    extra = []
    if args.smoke:
        args.budget, args.repeats, names = 2.0, 1, names[:2]
        extra = ["--hidden-size", "32", "--embed-size", "0"]
    sizes = (256, 512) if args.smoke else (1024, 2048, 3072)
    with torch.no_grad():
        fp32_rates, bf16_rates = matmul_rate(torch.float32, sizes), matmul_rate(torch.bfloat16, sizes)
    fp32, bf16 = max(fp32_rates.values()), max(bf16_rates.values())
    work = Path(tempfile.mkdtemp(prefix="throughput-"))
    results = {n: [] for n in names}
    for r in range(args.repeats):  # interleaved, so machine drift hits every preset alike
        for n in names:
            results[n].append(measure_preset(n, args.corpus, args.budget, work / f"{n}-{r}", extra))
    rates = lambda r: ", ".join(f"{k} {v / 1e9:,.0f}" for k, v in r.items())  # noqa: E731
    print(f"{args.corpus}; {torch.get_num_threads()} threads; median of {args.repeats} runs of "
          f"{args.budget:.0f} s; matmul GFLOP/s measured here: fp32 {rates(fp32_rates)}; "
          f"bf16 {rates(bf16_rates)}; fractions are of the faster")
    print("| preset | model | precision | tokens/s | GFLOP/s | of fp32 matmul | of same-precision matmul "
          "| peak RSS (MB) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for n in names:
        runs = results[n]
        m = runs[0]["model"]
        rate = statistics.median(x["tokens_per_second"] for x in runs)
        flops = rate * training_flops_per_token(m)
        peak = bf16 if runs[0]["precision"] == "bf16" else fp32
        print(f"| {n} | {m['num_layers']}×{m['hidden_size']} (embed {m['embed_size']}) | "
              f"{runs[0]['precision']} | {rate:,.0f} | {flops / 1e9:,.0f} | {ratio(flops, fp32):.0%} | "
              f"{ratio(flops, peak):.0%} | {statistics.median(x['peak_rss_mb'] for x in runs):,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
