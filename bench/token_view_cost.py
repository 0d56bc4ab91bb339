"""What recording the token view costs: tokens per second of sampled replies with each
token's TokenStep recorded (the chat page's token view) and without, in the same run.

Three paths, as a reply can be made: `sample_reply` (a session alone, no engine), the
`GenerationEngine` with one session (the app's path for one person), and the engine with N
sessions in one batch (every one recorded, or none). Each pair runs the same replies
(same seeds, so the same tokens: the script checks it), interleaved, several times; the
overhead is the median of the per-pair ratios. Time is the process's CPU time (all its
threads), not the wall clock, so other programs sharing the cores do not count.

    python bench/token_view_cost.py              # the bench/README.md table (the default model)
    python bench/token_view_cost.py --smoke      # seconds, for the tests
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.chat.engine import GenerationEngine  # noqa: E402
from chatbot.chat.sampling import SamplingConfig  # noqa: E402
from chatbot.chat.session import ChatSession  # noqa: E402
from chatbot.lm.checkpoint import load_checkpoint  # noqa: E402
from chatbot.lm.model import LanguageModel, ModelConfig  # noqa: E402
from chatbot.text.tokenizers import CharTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"app defaults": {}, "every filter on": dict(repetition_penalty=1.2, top_k=40, top_p=0.9, min_p=0.02,
                                                         typical_p=0.95)}
MESSAGE = "what does the forget gate do?"


def replies(model, tokenizer, engine, sessions: int, recorded: bool, cfg: dict, tokens: int):
    """Each of `sessions` sessions (one thread each) answers MESSAGE once; returns (tokens
    per CPU-second over the replies' sampling, each session's reply ids)."""
    chats = []
    for n in range(sessions):
        chat = ChatSession(model, tokenizer, SamplingConfig(**{"seed": n, "max_new_tokens": tokens,
                                                               **cfg}), engine=engine)
        chat.record_steps = recorded
        chats.append(chat)
    # The message is fed first (the same for both), so only the replies' sampling is timed.
    pieces = [chat.send(MESSAGE) for chat in chats]
    start = threading.Barrier(sessions + 1)

    def person(n):
        start.wait()
        for _ in pieces[n]:
            pass

    threads = [threading.Thread(target=person, args=(n,)) for n in range(sessions)]
    for t in threads:
        t.start()
    start.wait()
    began = time.process_time()
    for t in threads:
        t.join()
    seconds = time.process_time() - began
    ids = [chat.turns[-1].reply.ids for chat in chats]
    if recorded:
        assert all([s.token for s in chat.turns[-1].reply.steps] == chat.turns[-1].reply.ids for chat in chats)
    return sum(map(len, ids)) / seconds, ids


def load(args):
    if args.smoke:
        tokenizer = CharTokenizer.train(["the forget gate decides what the cell keeps"])
        torch.manual_seed(0)
        return LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, num_layers=2, hidden_size=64,
                                         embed_size=32)).eval(), tokenizer, "an untrained 2×64 char model"
    ckpt = load_checkpoint(args.model)
    c = ckpt.model.config
    return ckpt.model, ckpt.tokenizer, (f"{Path(args.model).name}: {c.num_layers}×{c.hidden_size} {c.cell.upper()}, "
                                        f"vocabulary {c.vocab_size:,}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "default"))
    p.add_argument("--tokens", type=int, default=100, help="the longest reply")
    p.add_argument("--batch", type=int, default=8, help="sessions in the batched row")
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.tokens, args.repeats, args.batch = 20, 1, 3
    model, tokenizer, what = load(args)
    engine = GenerationEngine(model)
    paths = [("sample_reply, alone", None, 1), ("engine, 1 session", engine, 1),
             (f"engine, {args.batch} sessions", engine, args.batch)]
    print(f"{what}; replies up to {args.tokens} tokens; median of {args.repeats} interleaved pairs; "
          f"{torch.get_num_threads()} threads")
    print("| path | settings | tokens per CPU-second, not recorded | recorded | recorded / not | extra cost per token |")
    print("|---|---|---:|---:|---:|---:|")
    same = True
    try:
        for label, eng, sessions in paths:
            for name, cfg in SETTINGS.items():
                replies(model, tokenizer, eng, sessions, True, cfg, args.tokens)  # warm up
                pairs = []
                for _ in range(args.repeats):
                    off, off_ids = replies(model, tokenizer, eng, sessions, False, cfg, args.tokens)
                    on, on_ids = replies(model, tokenizer, eng, sessions, True, cfg, args.tokens)
                    same &= off_ids == on_ids
                    pairs.append((off, on))
                off = statistics.median(a for a, _ in pairs)
                on = statistics.median(b for _, b in pairs)
                r = statistics.median(b / a for a, b in pairs)
                print(f"| {label} | {name} | {off:,.0f} | {on:,.0f} | {r:.2f} | {1 / r - 1:+.1%} |", flush=True)
    finally:
        engine.close()
    print(f"the same tokens recorded or not, on every row: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
