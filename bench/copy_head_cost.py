"""What the copy head costs per token: the same LSTM weights with their copy head and without
it (removed), generating one token at a time (the solo chat path, Stepper.step) and feeding a
message (one forward), alternated in one sitting so both see the same machine.

    python bench/copy_head_cost.py --model models/default
    python bench/copy_head_cost.py --model runs/x --smoke      # seconds, for the tests
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from chatbot.lm.checkpoint import load_checkpoint  # noqa: E402
from chatbot.lm.stepper import Stepper  # noqa: E402
from memory_recall import without_copy  # noqa: E402


def per_token_ms(model, tokens: int, message: int) -> tuple[float, float]:
    """(ms per generated token, ms per fed message token), from a state whose window is full."""
    stepper = Stepper(model)
    ids = torch.randint(0, model.config.vocab_size, (1, max(tokens, message, 512)),
                        generator=torch.Generator().manual_seed(0))  # the same text for both models
    with torch.inference_mode():
        _, state = model(ids)  # a conversation under way: a 512-token window is full
        for token in ids[0, :5].tolist():  # warm-up, untimed
            stepper.step(token, state)
        start = time.perf_counter()
        for token in ids[0, :tokens].tolist():
            _, state = stepper.step(token, state)
        step = (time.perf_counter() - start) / tokens
        start = time.perf_counter()
        model(ids[:, :message], state)
        feed = (time.perf_counter() - start) / message
    return 1000 * step, 1000 * feed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/default")
    p.add_argument("--tokens", type=int, default=300, help="tokens generated per measurement")
    p.add_argument("--message", type=int, default=64, help="tokens of the message fed per measurement")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.tokens, args.repeats = 20, 1
    ckpt = load_checkpoint(args.model)
    cfg = ckpt.spec.model
    if not cfg.copy_window:
        raise SystemExit(f"{args.model} has no copy head: nothing to compare.")
    plain = without_copy(ckpt).model
    times = {"with": [], "without": []}
    for _ in range(args.repeats):  # alternated, so that both see the same load
        times["with"].append(per_token_ms(ckpt.model.eval(), args.tokens, args.message))
        times["without"].append(per_token_ms(plain.eval(), args.tokens, args.message))
    median = {k: [statistics.median(t[i] for t in v) for i in (0, 1)] for k, v in times.items()}
    print(f"model: {args.model} ({cfg.cell} {cfg.num_layers}x{cfg.hidden_size}, copy window {cfg.copy_window}, "
          f"key size {cfg.copy_key_size}); {torch.get_num_threads()} threads; median of {args.repeats}\n")
    print("| path | without the copy head | with it | cost |")
    print("|---|---:|---:|---:|")
    for i, name in enumerate((f"generate, ms per token ({args.tokens} tokens)",
                              f"feed a {args.message}-token message, ms per token")):
        a, b = median["without"][i], median["with"][i]
        print(f"| {name} | {a:.3f} | {b:.3f} | {b / a - 1:+.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
