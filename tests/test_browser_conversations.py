"""Saved conversations and many people at once, in a real browser against `streamlit run`:
a server restart resumes a conversation with the same next reply, and five tabs chatting at
the same time each get exactly the replies they would get alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from browser_harness import CHROMIUM, Chat, app_server, browser, new_page
from chatbot.chat.session import ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.chat.sampling import SamplingConfig
from conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "browser"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's Chromium: apt-get install -y chromium (.ci/run does)")


@pytest.fixture
def folders(tiny_checkpoint, tmp_path):
    shutil.copytree(tiny_checkpoint, tmp_path / "models" / "chat", ignore=shutil.ignore_patterns("resume"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return tmp_path / "models", tmp_path / "data", tmp_path


def alone(models: Path, seed: int, messages: list[str]) -> list[str]:
    """The replies one session gets by itself (the app's default sampling, this seed)."""
    ckpt = load_checkpoint(models / "chat")
    chat = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(seed=seed))
    return ["".join(chat.send(m)).rstrip(" ") for m in messages]


def test_a_server_restart_resumes_the_conversation_with_the_same_next_reply(folders):
    models, data, tmp = folders
    messages = ["my name is Mina", "what is my name?", "hello"]
    expected = alone(models, 11, messages)
    with browser() as chromium:
        page = new_page(chromium)
        with app_server(models, data, tmp / "first.log") as (url, _):
            chat = Chat(page, url)
            chat.open()
            chat.fix_seed(11)
            assert [chat.say(m) for m in messages[:2]] == expected[:2]
            conversation = chat.conversation()
        with app_server(models, data, tmp / "second.log") as (url, _):  # a new process, new port
            chat = Chat(page, url)
            chat.open(conversation)
            page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stChatMessage\"]').length == 4")
            assert [chat.text(i) for i in (1, 3)] == expected[:2]
            assert page.locator('input[aria-label="Seed"]').input_value() == "11"
            assert chat.say(messages[2]) == expected[2]
            page.screenshot(path=str(ARTIFACTS / "restart-resumed.png"), full_page=True)
            assert chat.conversation() == conversation


def test_five_tabs_at_once_each_get_their_own_replies(folders):
    models, data, tmp = folders
    tabs = {seed: [f"hello {seed}", "what is an lstm?", f"my name is Mina{seed}"] for seed in range(5)}
    expected = {seed: alone(models, seed, messages) for seed, messages in tabs.items()}
    with browser() as chromium, app_server(models, data, tmp / "server.log") as (url, _):
        chats = {seed: Chat(new_page(chromium), url) for seed in tabs}
        for seed, chat in chats.items():
            chat.open()
            chat.fix_seed(seed)
        for turn in range(3):
            for seed, chat in chats.items():  # every tab sends before any reply is awaited
                chat.type(tabs[seed][turn])
            for seed, chat in chats.items():
                chat.wait_for_reply(2 * turn + 2)
        for seed, chat in chats.items():
            assert [chat.text(i) for i in (1, 3, 5)] == expected[seed], f"tab {seed}"
            assert chat.page.locator('[data-testid="stException"]').count() == 0
        assert len({chat.conversation() for chat in chats.values()}) == 5
        chats[0].page.screenshot(path=str(ARTIFACTS / "five-tabs-tab0.png"), full_page=True)


def test_another_browser_never_sees_lists_or_opens_this_browsers_conversations(folders):
    """Two browser contexts (separate cookie jars: two people). The owner key lives in a
    cookie, so a reload and a second tab of the same browser keep the conversation, while the
    other browser sees nothing of it, even with its ?c= address."""
    models, data, tmp = folders

    def tab(context) -> Chat:
        return Chat(new_page(context), url)

    def body(chat: Chat) -> str:
        return chat.page.inner_text("body")

    with browser() as chromium, app_server(models, data, tmp / "server.log") as (url, _):
        alice_browser = chromium.new_context(viewport={"width": 1280, "height": 1000})
        alice = tab(alice_browser)
        alice.open()
        alice.say("my secret password is hunter2")
        conversation = alice.conversation()
        alice.page.wait_for_function("() => document.body.innerText.includes('my secret password is hunter2 · 1 turn')")
        assert any(c["name"] == "lstm_chat_owner" for c in alice_browser.cookies())

        bob_browser = chromium.new_context(viewport={"width": 1280, "height": 1000})
        bob = tab(bob_browser)
        bob.open()
        assert "hunter2" not in body(bob)  # not listed
        bob.open(conversation)  # knowing the address is not enough
        bob.page.wait_for_function(
            "() => document.body.innerText.includes(\"not among this browser's saved conversations\")")
        assert "hunter2" not in body(bob) and bob.bubbles().count() == 0
        assert bob.conversation() != conversation
        bob.page.screenshot(path=str(ARTIFACTS / "other-browser-sees-nothing.png"), full_page=True)
        bob.say("hello")
        assert "hunter2" not in body(bob)

        alice.page.reload()  # the same browser: a reload and a second tab still have it
        alice.page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stChatMessage\"]').length == 2")
        assert alice.text(0) == "my secret password is hunter2"
        second = tab(alice_browser)
        second.open(conversation)
        second.page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stChatMessage\"]').length == 2")
        assert "hello" not in [second.text(i) for i in range(2)]  # bob's chat is not listed either
        assert "hunter2" in body(second)
