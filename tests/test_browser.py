"""End to end in a real browser: `streamlit run app.py` driven by Playwright in Debian's
headless Chromium. Screenshots of every step go to test-artifacts/browser/."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from chatbot.chat.session import ChatSession, reply_seed
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.chat.sampling import SamplingConfig
from chatbot.lm.spec import TrainConfig
from chatbot.train.loop import train
from browser_harness import CHROMIUM, Chat, app_server, browser_page
from conftest import ROOT, run_spec

ARTIFACTS = ROOT / "test-artifacts" / "browser"
MARKUP = "Literal $x$ and **b** and <b>bold</b> # end"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's Chromium: apt-get install -y chromium (.ci/run does)")


def train_slow_talker(folder: Path) -> Path:
    """A wide model trained on plain text: it never ends its turn and samples ~800 tokens/s,
    so a 5,000-token reply streams for seconds (long enough to watch it grow and to stop it)."""
    corpus = folder / "plain.txt"
    corpus.write_text("The cell state carries memory from step to step while the gates decide "
                      "what to keep. " * 300, encoding="utf-8")
    out = folder / "models" / "plain-slow"
    train(run_spec(corpus, TrainConfig(max_steps=40, seq_len=32, batch_size=8, eval_every=40, warmup_steps=5),
                   hidden_size=768, num_layers=2), out)
    shutil.rmtree(out / "resume")
    return out


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    models = base / "models"
    shutil.copytree(tiny_checkpoint, models / "chat", ignore=shutil.ignore_patterns("resume"))
    train_slow_talker(base)
    with app_server(models, base / "data", base / "streamlit.log") as (url, _):
        yield url, models


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page() as page:
        yield page


def shown(text: str) -> str:
    """Text as a browser draws it: a trailing space at the end of a paragraph is not drawn."""
    return text.rstrip(" ")


def library_session(folder, **sampling) -> ChatSession:
    ckpt = load_checkpoint(folder)
    settings = {"temperature": 0.8, "max_new_tokens": 300, "seed": 0, **sampling}
    return ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(**settings))


def fresh_state_reply(folder, message: str, turn_number: int) -> str:
    """What the bot would say to `message` with no memory but the same random draws."""
    s = library_session(folder)
    pieces = s.send(message)
    s.generator.manual_seed(reply_seed(0, turn_number))
    return "".join(pieces)


def test_chat_in_a_real_browser(server, page):
    url, models = server
    chat = Chat(page, url, ARTIFACTS)
    chat.open()
    chat.shot("start")

    # A fixed seed makes every reply reproducible by the library, so the test can tell
    # exactly which state each reply was sampled from.
    chat.mark()
    page.get_by_text("Fixed seed").click()
    chat.rerun_done()
    page.wait_for_selector('input[aria-label="Seed"]:not([disabled])')

    reference = library_session(models / "chat")
    first = chat.say("my name is Mina")
    assert first == shown("".join(reference.send("my name is Mina")))
    chat.shot("first-reply")

    # The second reply must come from the state the first turn left. Pick a message for
    # which memory changes the answer, so the check can tell the difference.
    candidates = ["tell me more", "what is my name?", "and you?", "ok"]
    for message in candidates:
        probe = library_session(models / "chat")
        "".join(probe.send("my name is Mina"))
        carried = "".join(probe.send(message))
        if carried != fresh_state_reply(models / "chat", message, 2):
            break
    else:
        pytest.fail("no candidate message whose reply depends on the carried state")
    assert chat.say(message) == shown("".join(reference.send(message))) == shown(carried)
    chat.shot("second-reply-from-carried-state")

    # Temperature to 0 (greedy): the next reply is the greedy continuation of this chat.
    slider = page.locator('input[type="range"][aria-label="Temperature"]')
    slider.focus()
    chat.mark()
    slider.press("Home")
    chat.rerun_done()
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stSliderThumbValue"]')]
                                    .some(e => e.innerText.trim() === '0.00')""")
    reference.sampling = reference.sampling.with_(temperature=0.0)
    assert chat.say("hello") == shown("".join(reference.send("hello")))
    chat.shot("greedy-after-temperature-0")

    # Markup the model emits shows as itself.
    chat.mark()
    page.get_by_role("button", name="New chat").click()
    chat.rerun_done()
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stChatMessage\"]')")
    assert chat.say("show me markup") == MARKUP
    bubble = chat.bubbles().nth(1)
    assert bubble.locator("b, strong, h1, .katex").count() == 0
    chat.shot("markup-shown-literally")

    # The Inspect page draws the gates of that reply.
    page.get_by_role("link", name="Inspect").click()
    page.wait_for_function("() => document.querySelectorAll('.vega-embed').length >= 5")
    assert page.locator('[data-testid="stException"]').count() == 0
    chat.shot("inspect-last-reply")
    chat.mark()
    page.get_by_role("link", name="Chat").click()
    chat.rerun_done()
    page.wait_for_selector('[data-testid="stChatInput"] textarea')
    assert chat.text(1) == MARKUP  # the conversation is still there

    # A long reply from the slow model: watch it grow, then press Stop mid-reply.
    chat.pick_model("plain-slow")
    chat.set_number("Max new tokens", 5000)
    chat.type("hello")
    seen: list[str] = []
    deadline = time.time() + 300  # only bounds a hang: the loop ends when 400 characters show
    while time.time() < deadline and len(seen[-1] if seen else "") < 400:
        if chat.bubbles().count() >= 2:
            text = chat.text(1)
            if not seen or text != seen[-1]:
                seen.append(text)
        page.wait_for_timeout(15)
    chat.shot("streaming")
    page.locator('[data-testid="stChatInputStopButton"]').click()
    page.wait_for_selector('[data-testid="stChatInputStopButton"]', state="detached")
    partial = chat.text(1)
    growing = [t for t in seen if t and t != partial]
    assert len(growing) >= 2, f"saw only {len(seen)} states: not streamed"
    assert all(b.startswith(a) for a, b in zip(seen, seen[1:]))  # it only ever grew
    whole = "".join(library_session(models / "plain-slow", temperature=0.0, max_new_tokens=5000).send("hello"))
    assert 400 <= len(partial) < len(whole) and whole.startswith(partial)
    chat.shot("stopped-partial-reply-kept")

    # The next turn follows from exactly the state after the partial reply.
    chat.set_number("Max new tokens", 200)
    after_stop = chat.say("next")
    with page.expect_download() as download:  # the transcript as the session holds it
        page.get_by_role("button", name="JSON").click()
    transcript = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    kept = transcript["messages"][1]["content"]
    assert [m["content"] for m in transcript["messages"][::2]] == ["hello", "next"]
    assert chat.text(1) == kept.rstrip(" ")  # a browser does not draw a trailing space
    assert kept.startswith(partial) and whole.startswith(kept)
    slow = library_session(models / "plain-slow", temperature=0.0, max_new_tokens=5000)
    pieces = slow.send("hello")
    while len(slow.turns[-1].reply.text) < len(kept):
        next(pieces)
    pieces.close()  # what Stop did
    assert slow.turns[-1].reply.text == kept
    slow.sampling = slow.sampling.with_(max_new_tokens=200)
    assert after_stop == shown("".join(slow.send("next")))
    chat.shot("next-turn-after-stop")

    # A reload brings the conversation back from the database, memory and settings included:
    # the next reply is the one the library's uninterrupted session gives.
    before = [chat.text(i) for i in range(4)]
    page.reload()
    page.wait_for_selector('[data-testid="stChatInput"] textarea')
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stChatMessage\"]').length == 4")
    assert page.locator('[data-testid="stException"]').count() == 0
    assert [chat.text(i) for i in range(4)] == before
    chat.shot("after-reload")
    assert chat.say("again") == shown("".join(slow.send("again")))
    chat.shot("next-reply-after-reload")
