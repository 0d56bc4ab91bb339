"""Terminal front end: `python -m chatbot chat --model DIR` and `python -m chatbot generate`.

Replies stream token by token; the conversation's memory is the model's recurrent state,
carried from turn to turn (see chatbot/chat/session.py).
"""

from __future__ import annotations

import argparse
import sys

from .chat.sampling import SETTINGS, SamplingConfig
from .chat.session import ChatSession
from .errors import ChatbotError
from .lm.checkpoint import load_checkpoint, save_fp16_copy

CHAT_HELP = """commands: /reset (fresh memory)  /regen (new version of the last reply)
          /temp X (set temperature)  /help  /quit   (Ctrl-C stops a reply, Ctrl-D quits)"""


def add_sampling_flags(p: argparse.ArgumentParser):
    p.add_argument("--model", default="models/default", help="checkpoint folder")
    defaults, groups = SamplingConfig(), {}
    for name, s in SETTINGS.items():  # declared once, in chatbot/chat/sampling.py
        if s.group not in groups:
            groups[s.group] = p.add_argument_group(s.group)
        groups[s.group].add_argument(f"--{name.replace('_', '-')}", type=int if s.whole else float,
                                     default=getattr(defaults, name), help=f"{s.help} ({s.rule()})")
    p.add_argument("--stop", action="append", default=[], help="stop after this string (repeatable)")
    p.add_argument("--seed", type=int, help="makes the output repeatable")


def sampling_from(args) -> SamplingConfig:
    return SamplingConfig(**{name: getattr(args, name) for name in SETTINGS},
                          stop=tuple(args.stop), seed=args.seed)


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
    half = sub.add_parser("fp16", help="copy a model with its weights stored as fp16 (half the size)")
    half.add_argument("--model", required=True, help="the checkpoint folder to copy")
    half.add_argument("--out", required=True, help="a new, empty folder for the copy")
    args = parser.parse_args(argv)
    try:
        if args.command == "fp16":
            out = save_fp16_copy(args.model, args.out)
            print(f"wrote {out} (weights {(out / 'model.safetensors').stat().st_size / 1e6:.1f} MB, fp16)")
            return 0
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
