"""Batch-1 generation speed: the fast Stepper against calling nn.LSTM once per token, on the
same weights, for each preset; and both against the rate at which the weights could be
streamed from memory (measured here too), since batch-1 generation reads every weight once
per token.

    python bench/generation_speed.py               # the README table
    python bench/generation_speed.py --smoke       # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.lm.model import LanguageModel, ModelConfig  # noqa: E402
from chatbot.lm.stepper import Stepper  # noqa: E402
from chatbot.train.presets import PRESETS  # noqa: E402


def memory_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes per second to read a buffer far larger than the caches (best of several)."""
    buf = torch.ones(megabytes * 2**20 // 4)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        buf.sum()
        best = max(best, buf.numel() * 4 / (time.perf_counter() - start))
    return best


def tokens_per_second(step, tokens: int) -> float:
    start = time.perf_counter()
    for t in range(tokens):
        step(t)
    return tokens / (time.perf_counter() - start)


@torch.inference_mode()
def measure(model: LanguageModel, tokens: int, repeats: int) -> tuple[float, float, float]:
    vocab = model.config.vocab_size
    stepper = Stepper(model)
    state = [model.initial_state(1)]

    def fast(t):
        logits, state[0] = stepper.step(4 + t % (vocab - 4), state[0])
        return logits

    plain_state = [model.initial_state(1)]

    def plain(t):
        logits, plain_state[0] = model(torch.tensor([[4 + t % (vocab - 4)]]), plain_state[0])
        return logits

    fast(0), plain(0)  # warm up
    pairs = [(tokens_per_second(fast, tokens), tokens_per_second(plain, tokens)) for _ in range(repeats)]
    # Interleaved runs; the speed-up is the median of per-pair ratios (the machine is noisy).
    return (statistics.median(f for f, _ in pairs), statistics.median(p for _, p in pairs),
            statistics.median(f / p for f, p in pairs))


def weight_bytes(model: LanguageModel) -> int:
    """What one batch-1 step reads: every weight but the embedding (one row of it)."""
    per_token = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("embed"))
    if model.config.tied:  # the head is the embedding matrix, read whole
        per_token += model.embed.weight.numel()
    return per_token * 4


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=870, help="vocabulary size (the default model has 870)")
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.tokens, args.repeats = 50, 1
    torch.manual_seed(0)
    bandwidth = memory_bandwidth(32 if args.smoke else 256)
    print(f"batch-1 tokens/s, median of {args.repeats} runs of {args.tokens} tokens; "
          f"{torch.get_num_threads()} threads; memory read rate {bandwidth / 1e9:.1f} GB/s")
    print("| preset | parameters | Stepper | nn.LSTM per token | speed-up | weight-streaming bound | Stepper / bound |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for preset in PRESETS.values():
        model = LanguageModel(ModelConfig(vocab_size=args.vocab, **preset.model_settings())).eval()
        fast, plain, ratio = measure(model, args.tokens, args.repeats)
        bound = bandwidth / weight_bytes(model)
        print(f"| {preset.name} {preset.num_layers}×{preset.hidden_size} | {model.num_parameters():,} | "
              f"{fast:,.0f} | {plain:,.0f} | {ratio:.1f}× | {bound:,.0f} | {fast / bound:.0%} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
