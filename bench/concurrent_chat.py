"""Many people at once: replies per second and time to first token when N sessions chat at
the same time on one shared model, as the app's sessions do (one thread each).

Two paths, in the same process: `threads`, each session generating alone on the shared
Stepper (sessions take turns), and `engine`, every session's tokens chosen in one
GenerationEngine's batched steps (what the app uses). Each session holds its own
conversation (user messages from the corpus, sampled replies, every turn saved to a SQLite
conversation store as the app does). Time to first token is measured from send() (which
feeds the message) to the first piece of text of the reply. The ratios are to the threads
path's single session of the same run; session n's replies (seed n) must be the same on
every row, which the last line checks.

    python bench/concurrent_chat.py                  # the README rows (1, 5, 20, 50 sessions)
    python bench/concurrent_chat.py --smoke          # seconds, for the tests
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.constant_turns import user_messages  # noqa: E402
from chatbot.chat.conversations import ConversationStore, ConversationsUnavailable  # noqa: E402
from chatbot.chat.engine import GenerationEngine  # noqa: E402
from chatbot.chat.sampling import SamplingConfig  # noqa: E402
from chatbot.chat.session import ChatSession  # noqa: E402
from chatbot.lm.checkpoint import load_checkpoint  # noqa: E402
from chatbot.lm.stepper import Stepper  # noqa: E402
from bench.measure import ratio  # noqa: E402


def person(ckpt, stepper, engine, store, n: int, messages: list[str], max_tokens: int,
           start: threading.Barrier, out: list) -> None:
    chat = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(seed=n, max_new_tokens=max_tokens), stepper,
                       engine)
    version, ttft, tokens, unsaved = 0, [], 0, 0
    start.wait()
    for message in messages:
        began = time.perf_counter()
        first = None
        for _ in chat.send(message):
            first = first or time.perf_counter()
        ttft.append((first or time.perf_counter()) - began)
        tokens += len(chat.turns[-1].reply.ids)
        try:  # as in the app, a save that fails (the database busy too long) is reported, not fatal
            version = store.save(f"c{n}", chat, "bench", ckpt.fingerprint, version)
        except ConversationsUnavailable:
            unsaved += 1
    out.append((ttft, tokens, n, [t.reply.ids for t in chat.turns], unsaved))


def run(ckpt, stepper, engine, sessions: int, messages: list[str], max_tokens: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = ConversationStore(Path(tmp) / "conversations.sqlite3").owned_by("bench")
        out: list = []
        start = threading.Barrier(sessions + 1)
        threads = [threading.Thread(target=person, args=(ckpt, stepper, engine, store, n, messages, max_tokens,
                                                         start, out))
                   for n in range(sessions)]
        for t in threads:
            t.start()
        start.wait()
        began = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - began
    if len(out) != sessions:
        raise SystemExit(f"{sessions - len(out)} session(s) failed; see the traceback above.")
    ttfts = sorted(x for ttft, *_ in out for x in ttft)
    replies = len(ttfts)
    return {"sessions": sessions, "replies": replies, "wall": wall, "replies_s": replies / wall,
            "tokens_s": sum(tok for _, tok, *_ in out) / wall, "p50": statistics.median(ttfts),
            "p95": ttfts[min(replies - 1, round(0.95 * (replies - 1)))],
            "ids": {n: ids for _, _, n, ids, _ in out}, "unsaved": sum(u for *_, u in out)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/default", help="checkpoint folder")
    p.add_argument("--corpus", default="corpora/default", help="where the user's messages come from")
    p.add_argument("--sessions", default="1,5,20,50", help="session counts to run, comma-separated")
    p.add_argument("--paths", default="threads,engine", help="threads (each session alone), engine (batched)")
    p.add_argument("--turns", type=int, default=10, help="messages each session sends")
    p.add_argument("--max-tokens", type=int, default=60, help="reply length cap (tokens)")
    p.add_argument("--threads", type=int, default=0, help="torch's intra-op threads (0: torch's default)")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    counts = [int(n) for n in args.sessions.split(",")]
    if args.smoke:
        counts, args.turns, args.max_tokens = [1, 3], 2, 5
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.model)
    stepper = Stepper(ckpt.model)
    messages = user_messages(Path(args.corpus), args.turns)
    print(f"{args.model}: {args.turns} turns per session, replies up to {args.max_tokens} tokens, "
          f"torch threads {torch.get_num_threads()}")
    print("| path | sessions | replies | wall s | replies/s | tokens/s | × 1 session | per session tokens/s "
          "| per session / solo | TTFT p50 ms | TTFT p95 ms | saves failed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    solo, replies, same = None, {}, True
    for path in args.paths.split(","):
        engine = GenerationEngine(ckpt.model, stepper) if path == "engine" else None
        run(ckpt, stepper, engine, 2, messages[:2], args.max_tokens)  # warm-up, not timed
        for n in counts:
            r = run(ckpt, stepper, engine, n, messages, args.max_tokens)
            solo = solo or r["tokens_s"]  # the first row: one session on the first path
            each = r["tokens_s"] / n
            print(f"| {path} | {r['sessions']} | {r['replies']} | {r['wall']:.2f} | {r['replies_s']:.1f} | "
                  f"{r['tokens_s']:,.0f} | {ratio(r['tokens_s'], solo):.2f} | {each:,.0f} | "
                  f"{ratio(each, solo):.0%} | {r['p50'] * 1000:.1f} | {r['p95'] * 1000:.1f} | {r['unsaved']} |",
                  flush=True)
            for session, ids in r["ids"].items():
                same = same and replies.setdefault(session, ids) == ids
    print(f"every session's replies the same on every row: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
