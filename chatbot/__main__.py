"""Terminal front end: `python -m chatbot chat --model DIR` and `python -m chatbot generate`.

Replies stream token by token; the conversation's memory is the model's recurrent state,
carried from turn to turn (see chatbot/chat.py).
"""

from __future__ import annotations

import argparse
import sys

from .chat import ChatSession
from .checkpoint import load_checkpoint
from .errors import ChatbotError
from .sampling import (MAX_BEAM_WIDTH, MAX_NEW_TOKENS_LIMIT, MAX_RELEVANCE, MAX_REPETITION_PENALTY,
                       MAX_TEMPERATURE, SamplingConfig)

CHAT_HELP = """commands: /reset (fresh memory)  /regen (new version of the last reply)
          /temp X (set temperature)  /help  /quit   (Ctrl-C stops a reply, Ctrl-D quits)"""


def add_sampling_flags(p: argparse.ArgumentParser):
    d = SamplingConfig()
    p.add_argument("--model", default="models/default", help="checkpoint folder")
    p.add_argument("--temperature", type=float, default=d.temperature, help=f"0 = greedy; up to {MAX_TEMPERATURE:g}")
    p.add_argument("--top-k", type=int, default=d.top_k, help="0 = off")
    p.add_argument("--top-p", type=float, default=d.top_p, help="1 = off")
    p.add_argument("--repetition-penalty", type=float, default=d.repetition_penalty,
                   help=f"1 = off; up to {MAX_REPETITION_PENALTY:g}")
    p.add_argument("--min-p", type=float, default=d.min_p,
                   help="drop tokens below this fraction of the likeliest one's probability; 0 = off")
    p.add_argument("--typical-p", type=float, default=d.typical_p,
                   help="locally typical sampling mass; 1 = off")
    p.add_argument("--beam-width", type=int, default=d.beam_width,
                   help=f"beam search with this many beams instead of sampling; 1 = off; up to {MAX_BEAM_WIDTH}")
    p.add_argument("--relevance", type=float, default=d.relevance,
                   help=f"penalise replies likely without the conversation (uses beam search); 0 = off; "
                        f"up to {MAX_RELEVANCE:g}")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens,
                   help=f"longest reply in tokens; 1 to {MAX_NEW_TOKENS_LIMIT:,}")
    p.add_argument("--stop", action="append", default=[], help="stop after this string (repeatable)")
    p.add_argument("--seed", type=int, help="makes the output repeatable")


def sampling_from(args) -> SamplingConfig:
    return SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                          repetition_penalty=args.repetition_penalty, min_p=args.min_p,
                          typical_p=args.typical_p, beam_width=args.beam_width, relevance=args.relevance,
                          max_new_tokens=args.max_new_tokens, stop=tuple(args.stop), seed=args.seed)


def stream_out(pieces) -> None:
    try:
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pieces.close()  # the state keeps exactly what was shown
        sys.stdout.write(" [stopped]")
    sys.stdout.write("\n")
    sys.stdout.flush()


def run_chat(session: ChatSession) -> None:
    print(f"chatting with {session.model.config.cell} model; {CHAT_HELP}")
    while True:
        try:
            line = input("you> ")
        except EOFError:
            print()
            return
        except KeyboardInterrupt:
            print()
            return
        command, _, arg = line.strip().partition(" ")
        try:
            if command in ("/quit", "/exit"):
                return
            if command == "/help":
                print(CHAT_HELP)
            elif command == "/reset":
                session.reset()
                print("(memory cleared)")
            elif command == "/regen":
                sys.stdout.write("bot> ")
                stream_out(session.regenerate())
            elif command == "/temp":
                try:
                    value = float(arg)
                except ValueError:
                    raise ChatbotError(f"/temp needs a number, e.g. /temp 0.7 (got {arg!r}).") from None
                session.sampling = session.sampling.with_(temperature=value)
                print(f"(temperature {value})")
            elif command.startswith("/"):
                print(f"unknown command {command}. {CHAT_HELP}")
            elif line.strip():
                pieces = session.send(line)
                sys.stdout.write("bot> ")
                stream_out(pieces)
        except ChatbotError as exc:
            print(f"error: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatbot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    chat = sub.add_parser("chat", help="chat in the terminal", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_sampling_flags(chat)
    gen = sub.add_parser("generate", help="print one sample", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_sampling_flags(gen)
    gen.add_argument("--prompt", required=True, help="text to continue (or, with --chat, a message)")
    gen.add_argument("--chat", action="store_true", help="treat --prompt as a user message and print the reply")
    args = parser.parse_args(argv)
    try:
        sampling = sampling_from(args)
        ckpt = load_checkpoint(args.model)
        session = ChatSession(ckpt.model, ckpt.tokenizer, sampling)
        if args.command == "chat":
            run_chat(session)
        else:
            stream_out(session.send(args.prompt) if args.chat else session.complete(args.prompt))
    except ChatbotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
