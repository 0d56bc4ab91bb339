"""Does the reply depend on the message? On conversations the model never trained on (the
validation split: the last 10% of the corpus in file order), score each bot reply in nats
per character twice, from the same state (the conversation so far): after its own message,
and after another validation conversation's message in the same language. A model that
answers what was said finds its reply much likelier after its own message; a model that
ignores the message scores both the same (a difference near 0).

    python bench/context_use.py --model models/default
    python bench/context_use.py --model models/default --conversations 400
    python bench/context_use.py --model runs/x --smoke
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chatbot.lm.checkpoint import load_checkpoint  # noqa: E402
from chatbot.text.corpus import characters, load_corpus, turn_ids  # noqa: E402


def is_korean(text: str) -> bool:
    return sum(0xAC00 <= ord(c) <= 0xD7A3 for c in text) > len(text) / 4


def validation_conversations(corpus, fraction: float) -> list[list[tuple[str, str]]]:
    """The conversations in the last `fraction` of the corpus's characters, in file order
    (the trainer's validation split is the last fraction of the tokens, the same text)."""
    start = corpus.characters * (1 - fraction)
    seen, out = 0, []
    for _, piece in corpus.pieces():
        if seen >= start and isinstance(piece, list):
            out.append(piece)
        seen += characters(piece)
    return out


@torch.inference_mode()
def reply_nats(model, tokenizer, state, message: str, reply: str) -> tuple[float, int]:
    """Total nats of `reply` (and its <|end|>) after `message`, from `state`; its characters."""
    prompt = turn_ids(tokenizer, "user", message) + [tokenizer.bot_id]
    target = tokenizer.encode(reply) + [tokenizer.end_id]
    x = torch.tensor([prompt + target[:-1]])
    logits, _ = model(x, state)
    logp = F.log_softmax(logits[0, len(prompt) - 1:].float(), dim=-1)
    return -logp.gather(1, torch.tensor(target)[:, None]).sum().item(), len(reply) + 1


@torch.inference_mode()
def advance(model, tokenizer, state, role: str, text: str):
    _, state = model(torch.tensor([turn_ids(tokenizer, role, text)]), state)
    return state


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/default")
    p.add_argument("--corpus", default=None, help="default: the corpus the model was trained on")
    p.add_argument("--val-fraction", type=float, default=None, help="default: the model's own")
    p.add_argument("--conversations", type=int, default=300, help="validation conversations to score")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="10 conversations: checks the bench runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.conversations = 10

    ckpt = load_checkpoint(args.model)
    model, tok = ckpt.model, ckpt.tokenizer
    corpus_path = args.corpus or (ckpt.spec.corpus.path if ckpt.spec.corpus else None)
    fraction = args.val_fraction or ckpt.spec.training.val_fraction
    corpus = load_corpus(ROOT / corpus_path if not Path(corpus_path).is_absolute() else corpus_path)
    convs = validation_conversations(corpus, fraction)
    rng = random.Random(args.seed)
    rng.shuffle(convs)
    convs = convs[:args.conversations]
    messages = {lang: [t for c in convs for r, t in c if r == "user" and is_korean(t) == (lang == "ko")]
                for lang in ("en", "ko")}
    started = time.perf_counter()
    totals = {lang: [0.0, 0.0, 0] for lang in ("en", "ko")}  # own nats, other nats, chars
    for conv in convs:
        state = model.initial_state(1)
        for (r1, message), (r2, reply) in zip(conv[::2], conv[1::2]):
            if r1 != "user" or r2 != "bot":
                break
            lang = "ko" if is_korean(message + reply) else "en"
            other = message
            while other == message and len(messages[lang]) > 1:
                other = rng.choice(messages[lang])
            own, chars = reply_nats(model, tok, state, message, reply)
            swapped, _ = reply_nats(model, tok, state, other, reply)
            t = totals[lang]
            t[0] += own
            t[1] += swapped
            t[2] += chars
            state = advance(model, tok, advance(model, tok, state, "user", message), "bot", reply)
    print(f"model: {args.model}; {len(convs)} validation conversations of {corpus_path} "
          f"(last {fraction:.0%} of the text), scored in {time.perf_counter() - started:.0f} s\n")
    print("| language | replies' characters | nats/char after own message | after another's | difference |")
    print("|---|---|---|---|---|")
    all_own = all_other = all_chars = 0
    for lang, label in (("en", "English"), ("ko", "Korean")):
        own, other, chars = totals[lang]
        all_own, all_other, all_chars = all_own + own, all_other + other, all_chars + chars
        if chars:
            print(f"| {label} | {chars:,} | {own / chars:.3f} | {other / chars:.3f} | {(other - own) / chars:+.3f} |")
    if all_chars:
        print(f"| both | {all_chars:,} | {all_own / all_chars:.3f} | {all_other / all_chars:.3f} | "
              f"{(all_other - all_own) / all_chars:+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
