"""Constant-cost turns: what turn 1, 10, 100 and 500 of one conversation cost when the
recurrent state carries the memory, against re-encoding the whole history each turn (what a
stateless chatbot does).

A real conversation is held with ChatSession (user messages taken in order from the corpus,
sampled replies). At the marked turns the same probe message is timed both ways with the library's own
primitives: feed the new message in one forward on top of the carried state, or feed history +
message in one forward from the zero state; then sample a fixed number of reply tokens with
the Stepper either way (a fixed count, so every turn does the same generation work).

    python bench/constant_turns.py --corpus corpora/default          # the README table
    python bench/constant_turns.py --corpus corpora/default --smoke  # seconds, for the tests
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.chat.sampling import SamplingConfig, choose_token  # noqa: E402
from chatbot.chat.session import ChatSession  # noqa: E402
from chatbot.lm.checkpoint import load_checkpoint  # noqa: E402
from chatbot.lm.state import RecurrentState  # noqa: E402
from chatbot.text.corpus import load_corpus, turn_ids  # noqa: E402


def user_messages(corpus: Path, limit: int) -> list[str]:
    """The user's lines of a chat corpus (or the lines of a plain-text one), in file order."""
    messages: list[str] = []
    for _, doc in load_corpus(corpus).pieces():
        if isinstance(doc, str):
            messages += [line for line in doc.splitlines() if line.strip()]
        else:
            messages += [text for role, text in doc if role == "user"]
    if not messages:
        raise SystemExit(f"{corpus}: no messages found.")
    return [messages[i % len(messages)][:500] for i in range(limit)]


@torch.inference_mode()
def timed_turn(session: ChatSession, state: RecurrentState, ids: list[int], reply_tokens: int,
               generator: torch.Generator) -> float:
    """Seconds to feed `ids` on top of `state` and sample `reply_tokens` tokens after them."""
    cfg = session.sampling
    start = time.perf_counter()
    logits, state = session.model(torch.tensor([ids]), state)
    logits = logits[0, -1]
    previous: list[int] = []
    for _ in range(reply_tokens):
        token = choose_token(logits, cfg, previous, generator)
        previous.append(token)
        logits, state = session.stepper.step(token, state)
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/default", help="checkpoint folder")
    p.add_argument("--corpus", default="corpora/default", help="where the user's messages come from")
    p.add_argument("--marks", default="1,10,100,500", help="turns to time")
    p.add_argument("--probe", default="How does an LSTM remember what I said earlier?",
                   help="the message sent at the timed turns, so every timed turn feeds the same length")
    p.add_argument("--reply-tokens", type=int, default=40, help="tokens sampled per timed reply")
    p.add_argument("--repeats", type=int, default=7, help="timings per turn and way; the median is shown")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    marks = [int(m) for m in args.marks.split(",")]
    if args.smoke:
        marks, args.repeats, args.reply_tokens = [1, 3], 1, 5
    torch.set_grad_enabled(False)
    ckpt = load_checkpoint(args.model)
    tok = ckpt.tokenizer
    session = ChatSession(ckpt.model, tok, SamplingConfig(seed=0, max_new_tokens=120))
    messages = user_messages(Path(args.corpus), max(marks))
    for m in marks:
        messages[m - 1] = args.probe
    history: list[int] = []  # every id the carried state has seen, in order
    generator = torch.Generator()
    rows = []
    for turn, message in enumerate(messages, start=1):
        if turn in marks:
            last = session.turns[-1].reply if session.turns else None
            ids = ([tok.end_id] if last is not None and not last.ended else []) \
                + turn_ids(tok, "user", message) + [tok.bot_id]
            carried, fresh = [], []
            for r in range(args.repeats):  # interleaved, so drift hits both ways alike
                generator.manual_seed(r)
                carried.append(timed_turn(session, session.state, ids, args.reply_tokens, generator))
                generator.manual_seed(r)
                zero = ckpt.model.initial_state(1)
                fresh.append(timed_turn(session, zero, history + ids, args.reply_tokens, generator))
            rows.append((turn, len(history), statistics.median(carried), statistics.median(fresh)))
        for _ in session.send(message):
            pass
        t = session.turns[-1]
        history += t.prompt_ids + t.reply.ids
    print(f"{ckpt.folder}: {ckpt.model.config.num_layers}x{ckpt.model.config.hidden_size} "
          f"{ckpt.model.config.cell}; each turn = the user's message + {args.reply_tokens} sampled "
          f"reply tokens; median of {args.repeats}; {torch.get_num_threads()} threads")
    print("| turn | history (tokens) | carried state (ms) | re-encode history (ms) | re-encode / carried |")
    print("|---:|---:|---:|---:|---:|")
    for turn, hist, carried, fresh in rows:
        print(f"| {turn} | {hist:,} | {carried * 1e3:.1f} | {fresh * 1e3:.1f} | {fresh / carried:.1f}× |")
    first, last = rows[0], rows[-1]
    print(f"turn {last[0]} / turn {first[0]}: carried state {last[2] / first[2]:.2f}×, "
          f"re-encoding {last[3] / first[3]:.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
