"""Saved conversations in the app (AppTest, real model, real SQLite file): reloads resume
with the same next reply, the sidebar lists, renames and deletes, other weights are refused."""

import shutil
import sqlite3

import pytest
import safetensors.torch
import torch
from streamlit.testing.v1 import AppTest

from chatbot.lm.checkpoint import load_checkpoint, save_checkpoint
from app_pages.plain_text import escape_markdown
from conftest import ROOT

MESSAGES = ["hello", "my name is Mina", "what is my name?"]


@pytest.fixture
def app_env(tiny_checkpoint, tmp_path, monkeypatch):
    models, data = tmp_path / "models", tmp_path / "data"
    shutil.copytree(tiny_checkpoint, models / "tiny")
    monkeypatch.setenv("LSTM_CHAT_MODELS", str(models))
    monkeypatch.setenv("LSTM_CHAT_DATA", str(data))
    return models, data


BROWSER = "a-test-browsers-owner-key-0123456789abcdefghijklmnop"  # the cookie a browser would send
OTHER_BROWSER = "another-browsers-owner-key-0123456789abcdefghijklmn"


def open_tab(conversation: str | None = None, seed: int | None = 42, browser: str = BROWSER) -> AppTest:
    """A new browser tab (a new session) of `browser`, at ?c=conversation when given. AppTest
    cannot send cookies, so the browser's key is handed to the session as the cookie would."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.session_state["owner_key"] = browser
    if conversation:
        at.query_params["c"] = conversation
    at.run()
    assert not at.exception, at.exception
    if seed is not None and conversation is None:
        at.slider(key="temperature").set_value(1.0)
        at.checkbox(key="use_seed").check()
        at.run()
        at.number_input(key="seed").set_value(seed)
        at.run()
    return at


def say(at: AppTest, message: str) -> str:
    at.chat_input[0].set_value(message).run()
    assert not at.exception, at.exception
    return at.session_state.chat.turns[-1].reply.text


def shown(at: AppTest) -> list[str]:
    return [m.markdown[0].value for m in at.chat_message]


def test_a_reload_resumes_the_conversation_and_its_next_reply(app_env):
    straight = open_tab()
    expected = [say(straight, m) for m in MESSAGES]

    first = open_tab()
    assert [say(first, m) for m in MESSAGES[:2]] == expected[:2]
    conversation = first.query_params["c"]
    assert conversation != straight.query_params["c"]

    reloaded = open_tab(conversation)  # same URL, new session: what a reload is
    assert shown(reloaded) == shown(first)
    assert reloaded.session_state.seed == 42 and reloaded.session_state.use_seed
    assert reloaded.session_state.chat.state.equals(first.session_state.chat.state)
    assert say(reloaded, MESSAGES[2]) == expected[2]
    assert reloaded.query_params["c"] == conversation


def test_a_second_tab_on_the_same_conversation_forks_instead_of_mixing(app_env):
    """Unseeded: the generator's position is saved too, so both tabs draw the same reply."""
    a = open_tab(seed=None)
    say(a, MESSAGES[0])
    conversation = a.query_params["c"]
    b = open_tab(conversation)
    reply_b = say(b, MESSAGES[1])
    reply_a = say(a, MESSAGES[1])
    assert reply_a == reply_b
    assert a.query_params["c"] != conversation == b.query_params["c"]
    assert "changed in another tab" in a.warning[0].value
    say(a, "a third message only tab a sends")
    c = open_tab(conversation)
    assert len(c.session_state.chat.turns) == 2  # b's conversation, untouched by a


def test_sidebar_lists_renames_opens_and_deletes(app_env):
    at = open_tab()
    say(at, "hello")
    first = at.query_params["c"]
    at.sidebar.button[0].click().run()  # New chat
    say(at, "what is an lstm?")
    second = at.query_params["c"]
    assert first != second
    listed = [b.label for b in at.sidebar.button if b.key and b.key.startswith("open-")]
    assert listed[0].startswith(escape_markdown("what is an lstm?")) and listed[1].startswith("hello")
    at.sidebar.text_input(key=f"title-{second}").set_value("About LSTMs").run()
    assert at.sidebar.button(key=f"open-{second}").label.startswith("About LSTMs")
    at.sidebar.button(key=f"open-{first}").click().run()
    assert at.query_params["c"] == first and shown(at)[0] == "hello"
    delete = next(b for b in at.sidebar.button if b.label == "Delete this conversation")
    delete.click().run()
    assert not at.chat_message and at.query_params["c"] not in (first, second)
    assert [b.key for b in at.sidebar.button if b.key and b.key.startswith("open-")] == [f"open-{second}"]


def test_a_memory_from_other_weights_is_not_applied(app_env):
    models, _ = app_env
    at = open_tab()
    say(at, "my name is Mina")
    conversation = at.query_params["c"]
    ckpt = load_checkpoint(models / "tiny")  # retrain, in effect: other weights, saved whole
    with torch.no_grad():
        for p in ckpt.model.parameters():
            p += 0.01
    save_checkpoint(models / "tiny", ckpt.model, ckpt.tokenizer, ckpt.spec)
    reloaded = open_tab(conversation)
    assert "memory was made by another model" in reloaded.warning[0].value
    assert shown(reloaded)[0] == escape_markdown("my name is Mina")
    chat = reloaded.session_state.chat
    assert chat.turns == [] and all((h == 0).all() for h in chat.state.h)
    say(reloaded, "hello")
    assert len(shown(reloaded)) == 4 and not reloaded.warning


def test_a_huge_message_is_cut_with_a_visible_notice(app_env):
    at = open_tab()
    say(at, "안녕 😀 " * 20_000)  # 100,000 characters
    captions = [c.value for c in at.chat_message[0].caption]
    assert captions == ["Only the first 4,000 of this message's 100,000 characters were read "
                        "(the limit per message)."]
    reloaded = open_tab(at.query_params["c"])
    assert reloaded.chat_message[0].caption[0].value == captions[0]


def test_conversations_are_in_sqlite_under_the_data_folder(app_env):
    _, data = app_env
    at = open_tab()
    say(at, "hello")
    with sqlite3.connect(data / "conversations.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        (memory,) = db.execute("SELECT memory FROM conversations").fetchone()
    tensors = safetensors.torch.load(memory)  # a safetensors blob, not a pickle
    assert set(tensors) == {"state.h.0", "state.h.1", "state.c.0", "state.c.1", "generator"}
    assert torch.equal(tensors["state.h.1"], at.session_state.chat.state.h[1, 0])


def test_a_damaged_database_is_reported_and_the_chat_still_works(app_env):
    _, data = app_env
    data.mkdir()
    (data / "conversations.sqlite3").write_bytes(b"not a database at all" * 50)
    at = open_tab()
    errors = [e.value.replace("\\", "") for e in at.sidebar.error]
    assert any("Conversations are not being saved" in e and "is damaged" in e
               and "data/conversations.sqlite3" in e for e in errors), errors
    assert say(at, "hello")
    assert (data / "conversations.sqlite3").read_bytes() == b"not a database at all" * 50


def test_a_database_damaged_while_the_app_runs_keeps_the_chat_going(app_env):
    """truncate -s0 the file, remove -wal and -shm, reload: the page says saving is off and
    why, the chat goes on, and the damaged file is kept with a copy beside it."""
    _, data = app_env
    first = open_tab()
    say(first, "hello")
    path = data / "conversations.sqlite3"
    with open(path, "r+b") as f:
        f.truncate(0)
    for suffix in ("-wal", "-shm"):
        (data / f"conversations.sqlite3{suffix}").unlink(missing_ok=True)
    reloaded = open_tab(first.query_params["c"])
    assert not reloaded.exception, reloaded.exception
    errors = [e.value.replace("\\", "") for e in reloaded.sidebar.error]
    assert any("Conversations are not being saved" in e and "is damaged (no such table" in e
               and "a copy is kept as data/conversations.sqlite3.damaged-" in e for e in errors), errors
    assert str(data) not in " ".join(errors)
    assert say(reloaded, "what is an lstm?")
    assert say(first, "my name is Mina")  # the other session chats on too
    assert path.exists() and path.stat().st_size == 0
    assert len(list(data.glob("conversations.sqlite3.damaged-*"))) == 1


def test_another_browser_cannot_list_or_open_this_browsers_conversations(app_env):
    mine = open_tab()
    say(mine, "my secret password is hunter2")
    conversation = mine.query_params["c"]
    theirs = open_tab(conversation, browser=OTHER_BROWSER)  # knowing the ?c= id is not enough
    assert not theirs.exception, theirs.exception
    assert not theirs.chat_message and theirs.session_state.chat.turns == []
    assert theirs.query_params["c"] != conversation
    assert "not among this browser's saved conversations" in theirs.warning[0].value.replace("\\", "")
    labels = " ".join(b.label for b in theirs.sidebar.button)
    assert "hunter2" not in labels and f"open-{conversation}" not in [b.key for b in theirs.sidebar.button]
    say(theirs, "hello")
    assert len(open_tab(conversation).session_state.chat.turns) == 1  # still mine, untouched


def test_a_signed_in_account_owns_its_conversations_on_any_browser(app_env):
    account = {"is_logged_in": True, "iss": "https://id.example.org", "sub": "alice", "email": "a@x.org"}
    laptop = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    laptop.user = account
    laptop.run()
    say(laptop, "hello from the laptop")
    conversation = laptop.query_params["c"]
    phone = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    phone.user = account
    phone.session_state["owner_key"] = OTHER_BROWSER
    phone.query_params["c"] = conversation
    phone.run()
    assert shown(phone)[0] == escape_markdown("hello from the laptop")
    bob = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    bob.user = {**account, "sub": "bob"}
    bob.query_params["c"] = conversation
    bob.run()
    assert not bob.chat_message and bob.query_params["c"] != conversation


def test_the_numbers_under_each_reply_come_back_after_a_reload(app_env):
    at = open_tab()
    say(at, "hello")
    say(at, "what is an lstm?")
    captions = [m.caption[0].value for m in at.chat_message if m.name == "assistant"]
    assert len(captions) == 2 and all("tokens/s while generating" in c for c in captions)
    reloaded = open_tab(at.query_params["c"])
    assert [m.caption[0].value for m in reloaded.chat_message if m.name == "assistant"] == captions
