"""How generic are the replies? The share of prompts that get the single most common reply,
with beam search at several relevance settings, on one model.

Relevance R scores a reply by log p(reply | conversation) - R * log p(reply | fresh chat): a
reply the model would give whatever was said loses points. A lower share means fewer
one-size-fits-all answers.

    python bench/relevance.py --model models/default
    python bench/relevance.py --model models/default --smoke
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.chat.sampling import SamplingConfig  # noqa: E402
from chatbot.chat.session import ChatSession  # noqa: E402
from chatbot.lm.checkpoint import load_checkpoint  # noqa: E402

PROMPTS = [
    "hello!", "hi", "how are you?", "what is an LSTM?", "what does the forget gate do?",
    "what is the cell state?", "why do gradients vanish?", "what is a GRU?",
    "how do I train my own model?", "what does temperature do?", "can you remember my name?",
    "tell me a joke", "what are you?", "thanks!", "bye", "what is top-p?",
    "안녕하세요!", "LSTM이 뭐예요?", "망각 게이트는 뭐예요?", "고마워요",
]


def replies(ckpt, relevance: float, beam_width: int, max_new_tokens: int, prompts) -> list[str]:
    out = []
    for prompt in prompts:
        s = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(
            beam_width=beam_width, relevance=relevance, max_new_tokens=max_new_tokens))
        out.append("".join(s.send(prompt)).strip())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/default")
    p.add_argument("--relevance", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75])
    p.add_argument("--beam-width", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=120)
    p.add_argument("--smoke", action="store_true", help="3 prompts, short replies")
    args = p.parse_args(argv)
    prompts = PROMPTS[:3] if args.smoke else PROMPTS
    if args.smoke:
        args.max_new_tokens, args.relevance = 20, [0.0, 0.5]
    ckpt = load_checkpoint(args.model)
    print(f"{len(prompts)} prompts, beam width {args.beam_width}, model {args.model}")
    print("| relevance | most common reply | its share | distinct replies |")
    print("|---:|---|---:|---:|")
    for r in args.relevance:
        got = replies(ckpt, r, args.beam_width, args.max_new_tokens, prompts)
        top, count = Counter(got).most_common(1)[0]
        shown = top if len(top) <= 60 else top[:57] + "..."
        print(f"| {r:g} | {shown.replace('|', '/')} | {count / len(got):.0%} | {len(set(got))} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
