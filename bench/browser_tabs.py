"""Many people at once in real browser tabs: N headless Chromium tabs (the test suite's
harness, each tab its own browser context, so its own person) on one `streamlit run app.py`,
whose sessions all generate through the model's GenerationEngine.

Every tab fixes its seed (tab n: seed n), then for each message every tab sends it before any
reply is awaited. The wall time runs from the first message sent to the last reply finished
(its stats caption drawn); the rate is the replies' characters over it (the default model's
tokens are characters). Each tab's replies are compared, whitespace aside (the page lays text
out as HTML), with what one ChatSession alone makes from the same messages and seed.

    python bench/browser_tabs.py --tabs 1,10     # the bench/README row
    python bench/browser_tabs.py --smoke         # 1 and 2 tabs, one message
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser_harness import Chat, app_server, browser, new_page  # noqa: E402
from measure import per_second, ratio  # noqa: E402
from bench.constant_turns import user_messages  # noqa: E402
from chatbot.chat.sampling import SamplingConfig  # noqa: E402
from chatbot.chat.session import ChatSession  # noqa: E402
from chatbot.lm.checkpoint import load_checkpoint  # noqa: E402


def words(text: str) -> str:
    return " ".join(text.split())


def alone(model: Path, seed: int, messages: list[str]) -> list[str]:
    """The replies one session makes by itself (the app's default settings, this seed)."""
    ckpt = load_checkpoint(model)
    chat = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(seed=seed))
    return [words("".join(chat.send(m))) for m in messages]


def run(models: Path, tmp: Path, tabs: int, messages: list[str]) -> dict:
    data = tmp / f"data-{tabs}"
    with browser() as chromium, app_server(models, data, tmp / f"server-{tabs}.log") as (url, _):
        chats = [Chat(new_page(chromium), url) for _ in range(tabs)]
        for seed, chat in enumerate(chats):
            chat.open()
            chat.fix_seed(seed)
        began = time.perf_counter()
        for turn, message in enumerate(messages):
            for chat in chats:  # every tab sends before any reply is awaited
                chat.type(message)
            for chat in chats:
                chat.wait_for_reply(2 * turn + 2)
        wall = time.perf_counter() - began
        replies = [[words(chat.text(2 * i + 1)) for i in range(len(messages))] for chat in chats]
    return {"wall": wall, "replies": replies, "chars": sum(len(r) for tab in replies for r in tab)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/default", help="checkpoint folder")
    p.add_argument("--corpus", default="corpora/default", help="where the messages come from")
    p.add_argument("--tabs", default="1,10", help="tab counts, comma-separated")
    p.add_argument("--turns", type=int, default=3, help="messages each tab sends")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    counts = [int(n) for n in args.tabs.split(",")]
    if args.smoke:
        counts, args.turns = [1, 2], 1
    messages = user_messages(Path(args.corpus), args.turns)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = tmp / "models"
        shutil.copytree(args.model, models / Path(args.model).name, ignore=shutil.ignore_patterns("resume"))
        expected = {seed: alone(Path(args.model), seed, messages) for seed in range(max(counts))}
        print(f"{args.model}: {args.turns} messages per tab, the app's default settings, tab n with seed n")
        print("| tabs | replies | wall s | reply chars/s | × 1 tab | replies equal to alone |")
        print("|---:|---:|---:|---:|---:|---|")
        first, same = None, True
        for n in counts:
            r = run(models, tmp, n, messages)
            rate = per_second(r["chars"], r["wall"])
            first = first or rate
            equal = sum(r["replies"][seed] == expected[seed] for seed in range(n))
            same = same and equal == n
            print(f"| {n} | {n * len(messages)} | {r['wall']:.1f} | {rate:,.0f} | {ratio(rate, first):.2f} | "
                  f"{equal} of {n} tabs |", flush=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
