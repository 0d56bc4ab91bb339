"""Compare settings side by side in a real browser (Playwright in headless Chromium): three
columns answer one message, the second is kept, and the chat goes on from its memory exactly as
a chat that got that reply directly. The screenshot of the columns is docs/compare.png."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from browser_harness import CHROMIUM, IDLE, Chat, app_server, browser_page
from chatbot.chat.sampling import SamplingConfig, preset
from chatbot.chat.session import ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "browser"
FIRST, SECOND = "hello", "what is my name?"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's Chromium: apt-get install -y chromium (.ci/run does)")


def reply_text(bubble) -> str:
    """A compared column's reply as the browser draws it (the line above it names its settings)."""
    return bubble.locator('[data-testid="stMarkdownContainer"]').last.inner_text().replace("\u00a0", " ")


def test_compare_three_settings_keep_the_second_and_go_on(tiny_checkpoint, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_checkpoint, models / "chat", ignore=shutil.ignore_patterns("resume"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with app_server(models, tmp_path / "data", tmp_path / "streamlit.log") as (url, _), browser_page() as page:
        chat = Chat(page, url)
        chat.open()
        chat.fix_seed(11)
        chat.set_number("Max new tokens", 40)
        chat.mark()
        page.get_by_text("Compare settings side by side").click()
        chat.rerun_done()

        chat.mark()
        chat.type(FIRST)
        keep = page.get_by_role("button", name=re.compile("^Keep this reply"))
        page.wait_for_function("() => [...document.querySelectorAll('button')]"
                               ".filter(b => b.innerText.startsWith('Keep this reply')).length === 3")
        page.wait_for_function(IDLE)
        bubbles = chat.bubbles()
        assert bubbles.count() == 4  # the message, and a column per setting
        columns = [reply_text(bubbles.nth(i)) for i in (1, 2, 3)]
        assert "precise: temperature 0.3 · top_k 20 · seed 11" in bubbles.nth(2).inner_text()
        page.locator('[data-testid="stMainBlockContainer"]').screenshot(path=str(ARTIFACTS / "compare.png"))

        chat.mark()
        keep.nth(1).click()
        chat.rerun_done()
        page.wait_for_selector("text=Kept reply 2 (precise) of 3 compared side by side")
        assert chat.bubbles().count() == 2 and chat.text(1) == columns[1]
        second = chat.say(SECOND)

    ckpt = load_checkpoint(models / "chat")
    direct = ChatSession(ckpt.model, ckpt.tokenizer, preset("precise", SamplingConfig(max_new_tokens=40, seed=11)))
    assert columns[1] == "".join(direct.send(FIRST)).rstrip(" ")
    assert second == "".join(direct.send(SECOND)).rstrip(" ")
