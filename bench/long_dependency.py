"""Remember one symbol through N distractors: where the plain RNN forgets and the LSTM holds.

Each sequence is [s, d_1 … d_N, ?]: a symbol s (one of 4), N random distractor tokens, then a
query; the model must answer s at the query. Nothing in between helps, so the answer has to be
carried N steps in the recurrent state, and the gradient that teaches it has to travel N steps
back: the vanishing-gradient problem, which the LSTM's additive cell state and forget gate
were designed for. rnn, gru and lstm cells of the same hidden size are trained for the same
number of steps for each N, and scored on fresh sequences (chance is 25%). `lstm` starts its
forget-gate bias at 1, as the project's models do; `lstm-fb3` at 3, which starts the cell
remembering ~95% per step instead of ~73%.

    python bench/long_dependency.py                    # the README table (~3 min on 2 cores)
    python bench/long_dependency.py --smoke            # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.lm.model import LanguageModel, ModelConfig  # noqa: E402

SYMBOLS, DISTRACTORS = 4, 8
QUERY = SYMBOLS + DISTRACTORS
VOCAB = QUERY + 1


def batch(n: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    answer = torch.randint(0, SYMBOLS, (size,), generator=generator)
    noise = torch.randint(SYMBOLS, SYMBOLS + DISTRACTORS, (size, n), generator=generator)
    query = torch.full((size, 1), QUERY)
    return torch.cat([answer[:, None], noise, query], dim=1), answer


def build(cell: str, hidden: int) -> LanguageModel:
    """`lstm-fbX` is an LSTM whose forget-gate bias starts at X instead of the project's 1."""
    kind, _, fb = cell.partition("-fb")
    model = LanguageModel(ModelConfig(vocab_size=VOCAB, cell=kind, num_layers=1, hidden_size=hidden,
                                      dropout=0.0, tie_weights=False))
    # Unit-scale embeddings: on this synthetic task the symbols must be told apart at once
    # (the language models start them small because their embedding doubles as the output layer).
    torch.nn.init.normal_(model.embed.weight, std=1.0)
    if fb:
        with torch.no_grad():
            model.rnn.bias_ih_l0[hidden:2 * hidden].fill_(float(fb))
            model.rnn.bias_hh_l0[hidden:2 * hidden].zero_()
    return model


def run(cell: str, n: int, steps: int, hidden: int, batch_size: int, lr: float, seed: int) -> float:
    torch.manual_seed(seed)
    data = torch.Generator().manual_seed(seed)
    model = build(cell, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        x, y = batch(n, batch_size, data)
        logits, _ = model(x)
        loss = F.cross_entropy(logits[:, -1], y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    with torch.no_grad():
        x, y = batch(n, 1000, torch.Generator().manual_seed(seed + 10_000))
        guess = model(x)[0][:, -1, :SYMBOLS].argmax(-1)  # the answer is one of the 4 symbols
        return (guess == y).float().mean().item()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", type=int, nargs="+", default=[5, 20, 50, 100, 200], help="distractor counts")
    p.add_argument("--cells", nargs="+", default=["rnn", "gru", "lstm", "lstm-fb3"],
                   help="rnn, gru, lstm, or lstm-fbX (forget-gate bias X at the start)")
    p.add_argument("--steps", type=int, default=600, help="training steps per run (the fixed budget)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    args = p.parse_args(argv)
    if args.smoke:
        args.ns, args.steps, args.hidden, args.batch_size = [2, 5], 5, 8, 8
    print(f"accuracy at the query after {args.steps} steps (batch {args.batch_size}, hidden "
          f"{args.hidden}, 1 layer, chance 25%)")
    print("| N distractors | " + " | ".join(args.cells) + " | seconds |")
    print("|---:|" + "---:|" * len(args.cells) + "---:|")
    for n in args.ns:
        start = time.perf_counter()
        scores = [run(cell, n, args.steps, args.hidden, args.batch_size, args.lr, args.seed)
                  for cell in args.cells]
        print(f"| {n} | " + " | ".join(f"{s:.0%}" for s in scores)
              + f" | {time.perf_counter() - start:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
