"""A conversation written out for download: Markdown to read, JSON to process."""

from __future__ import annotations

import json

from chatbot.chat.session import ChatSession


def transcript_json(chat: ChatSession, model: str) -> str:
    return json.dumps({"model": model, "sampling": chat.sampling.settings(),
                       "messages": chat.transcript()}, ensure_ascii=False, indent=2)


def transcript_markdown(chat: ChatSession, model: str) -> str:
    lines = [f"# lstm-chat transcript ({model})", ""]
    for message in chat.transcript():
        who = "You" if message["role"] == "user" else "Bot"
        lines += [f"**{who}:** {message['content']}", ""]
    return "\n".join(lines)
