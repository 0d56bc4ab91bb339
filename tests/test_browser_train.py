"""The Train page end to end in a real browser: upload a chat corpus, train with the defaults for
a short budget, watch validation points and sample replies arrive before the end, read the
verdict, then chat with the new model. Screenshots go to test-artifacts/browser-train/."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from browser_harness import CHROMIUM, IDLE, Chat, app_server, browser_page
from conftest import ROOT, write_chat_corpus

ARTIFACTS = ROOT / "test-artifacts" / "browser-train"
LONG = 600_000  # ms: generous, for a busy machine

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's Chromium: apt-get install -y chromium (.ci/run does)")


def test_train_in_the_browser_then_chat_with_the_result(tiny_checkpoint, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_checkpoint, models / "chat", ignore=shutil.ignore_patterns("resume"))
    corpus = write_chat_corpus(tmp_path / "my chats.jsonl", repeats=30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with app_server(models, tmp_path / "data", tmp_path / "streamlit.log") as (url, _), browser_page() as page:
        chat = Chat(page, url, ARTIFACTS)
        chat.open()
        chat.mark()
        page.get_by_role("link", name="Train").click()
        chat.rerun_done()
        chat.mark()
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(corpus))
        page.get_by_text(re.compile(r"characters, 210 conversations")).wait_for(timeout=LONG)
        chat.rerun_done()
        # Every default kept (the size is "auto", checked in its config below); only a short
        # budget and a name.
        chat.set_number("Time budget (minutes)", 0.5)
        page.get_by_text(re.compile(r"gets about [\d,]+ steps in 0.5 minutes")).wait_for(timeout=LONG)
        chat.mark()
        name = page.locator('input[aria-label="Name of the new model"]')
        name.fill("browser-made")
        name.press("Enter")
        chat.rerun_done()
        chat.shot("ready-to-train")
        train = page.locator('[data-testid="stBaseButton-primary"]', has_text="Train")
        page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stBaseButton-primary"]')]
                                        .some(b => b.innerText.trim() === 'Train' && !b.disabled)""")
        page.wait_for_function(IDLE)  # no run under way that could redraw the button as it is clicked
        train.click()

        # While it trains (the progress bar is up): several evaluations, each with its sample.
        page.wait_for_function(
            """() => document.querySelector('[data-testid="stProgress"]') &&
                     document.querySelectorAll('.st-key-evaluations [data-testid="stCaptionContainer"]').length >= 3""",
            timeout=LONG)
        chat.shot("evaluations-while-training")
        listed = page.locator(".st-key-evaluations").inner_text()
        assert listed.count("validation") >= 3 and "→" in listed
        assert page.get_by_role("button", name=re.compile("Cancel")).count() == 1

        # Then the verdict, in plain words.
        # The verdict's box fills in over a rerun (the progress panel's last elements linger
        # until it ends): wait for its summary line and an idle page before reading it.
        page.locator(".st-key-verdict").get_by_text(re.compile("^Verdict: ")).wait_for(timeout=LONG)
        page.locator(".st-key-verdict").get_by_text(re.compile("browser-made finished at step")).wait_for(timeout=LONG)
        page.wait_for_function(IDLE, timeout=LONG)
        verdict = page.locator(".st-key-verdict").inner_text()
        assert re.search(r"(still learning|getting there|ready to chat)", verdict), verdict
        assert "browser-made finished at step" in verdict and "words of the corpus" in verdict
        config = json.loads((models / "browser-made" / "config.json").read_text())
        assert config["training"]["fit_budget"] == "size"  # the budget picked the size
        chat.shot("verdict")

        # And it chats.
        chat.mark()
        page.get_by_role("link", name="Chat").click()
        chat.rerun_done()
        page.wait_for_selector('[data-testid="stChatInput"] textarea')
        chat.pick_model("browser-made")
        chat.say("hello")
        assert chat.bubbles().count() == 2
        assert page.locator('[data-testid="stException"]').count() == 0
        chat.shot("chat-with-the-new-model")
