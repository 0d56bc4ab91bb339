"""Compare settings side by side on the chat page, driven by AppTest against the real model: the
kept column's conversation goes on exactly as a chat that got that reply directly."""

import json
import sqlite3

from streamlit.testing.v1 import AppTest

from app_pages.plain_text import escape_markdown
from chatbot.chat.sampling import preset
from chatbot.chat.session import ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from conftest import ROOT

FIRST, SECOND = "hello", "what is my name?"


def start() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.run()
    assert not at.exception, at.exception
    return at


def say(at: AppTest, message: str) -> None:
    at.chat_input[0].set_value(message).run()
    assert not at.exception, at.exception
    assert at.chat_message[-1].name == "assistant"


def compare(at, message: str):
    at.chat_input[0].set_value(message).run()
    assert not at.exception, at.exception
    return at.session_state.chat.comparing.candidates


def test_compare_keeps_the_second_column_and_goes_on_from_its_memory(app_env):
    at = start()
    at.sidebar.number_input(key="max_new_tokens").set_value(40)
    at.sidebar.checkbox(key="use_seed").check()
    at.sidebar.toggle(key="compare_on").set_value(True)
    at.run()
    at.sidebar.number_input(key="seed").set_value(11).run()
    base = at.session_state.chat.sampling
    assert at.sidebar.multiselect(key="compare_names").value == ["yours", "precise", "creative"]

    compare(at, FIRST)  # first thrown away: the memory goes back to before the message
    at.button(key="discard-compared").click().run()
    chat = at.session_state.chat
    assert chat.comparing is None and chat.turns == [] and not at.sidebar.toggle(key="compare_on").value
    assert not [m for m in at.chat_message if m.name == "assistant"]

    at.sidebar.toggle(key="compare_on").set_value(True).run()
    candidates = compare(at, FIRST)
    settings = [base, preset("precise", base), preset("creative", base)]
    assert [c.sampling for c in candidates] == settings
    assert [m.name for m in at.chat_message] == ["user", "assistant", "assistant", "assistant"]
    for bubble, candidate in zip(at.chat_message[1:], candidates):  # plain text, each in its column
        assert bubble.markdown[0].value == escape_markdown(candidate.reply.text)
    assert at.chat_input[0].disabled is False and len(at.columns) >= 3
    at.run()  # a rerun keeps the columns, and the message box waits for a choice
    assert at.chat_input[0].disabled and at.session_state.chat.comparing is not None

    at.button(key="keep-1").click().run()
    assert not at.exception, at.exception
    assert chat.comparing is None and chat.sampling == settings[1]
    assert at.sidebar.slider(key="temperature").value == 0.3 and not at.sidebar.toggle(key="compare_on").value
    assert "Kept reply 2 (precise) of 3" in at.chat_message[1].caption[0].value
    say(at, SECOND)

    ckpt = load_checkpoint(app_env / "tiny")
    direct = ChatSession(ckpt.model, ckpt.tokenizer, settings[1])
    assert "".join(direct.send(FIRST)) == chat.turns[0].reply.text == candidates[1].reply.text
    assert "".join(direct.send(SECOND)) == chat.turns[1].reply.text
    with sqlite3.connect(app_env.parent / "data" / "conversations.sqlite3") as db:
        stats = [json.loads(s) for (s,) in db.execute("SELECT stats FROM turns ORDER BY rowid")]
    assert stats[0]["compared"] == {"settings": [s.settings() for s in settings], "kept": 1,
                                    "names": ["yours", "precise", "creative"]}
