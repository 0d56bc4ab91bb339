"""The token view in a real browser: the reply's tokens drawn shaded, a hover's tooltip and a
click's table carrying the numbers the sampler really used. Its screenshot is the one in
docs/token-view.md (test-artifacts/browser/token-view.png)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from app_pages.token_view import labels
from browser_harness import CHROMIUM, Chat, app_server, browser_page, repeat_until
from chatbot.chat.sampling import SamplingConfig
from chatbot.chat.session import ChatSession
from chatbot.lm.checkpoint import load_checkpoint
from conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "browser"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's Chromium: apt-get install -y chromium (.ci/run does)")


def tooltip(page) -> str:
    return page.evaluate("() => document.querySelector('#vg-tooltip-element')?.innerText || ''")


def hover_until_tooltip(page, target, head: str, limit_s: float = 60.0) -> str:
    """Hover the token until its whole tooltip shows (the chart may still be redrawn by a late
    rerun, which drops a tooltip already up); return the tooltip's text."""
    def hover():
        page.mouse.move(0, 0)
        target.hover()
    try:
        return repeat_until(page, hover,
                            """head => { const t = document.querySelector('#vg-tooltip-element')?.innerText || '';
                                         return t.trim().split(/\\s+/).slice(0, 2).join(' ') === head && t.includes('#10') ? t : null; }""",
                            head, every_ms=5000, limit_s=limit_s)
    except PlaywrightTimeout:
        raise AssertionError(f"no tooltip starting {head!r}; shown: {tooltip(page)!r}") from None


def test_token_view_in_a_real_browser(tiny_checkpoint, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_checkpoint, models / "chat", ignore=shutil.ignore_patterns("resume"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with app_server(models, tmp_path / "data", tmp_path / "streamlit.log") as (url, _), browser_page() as page:
        try:
            check_token_view(page, url, models)
        except Exception:  # keep what the page showed (the harness's hook needs a `page` fixture)
            (ROOT / "test-artifacts" / "failures").mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ROOT / "test-artifacts" / "failures" / "token-view.png"), full_page=True)
            raise


def check_token_view(page, url, models):
    """A reply with a fixed seed and top-k, then its token view: hover, click, table."""
    chat = Chat(page, url)
    chat.open()
    chat.fix_seed(5)
    chat.set_number("Top-k", 8)
    said = chat.say("what is an lstm?")

    ckpt = load_checkpoint(models / "chat")
    library = ChatSession(ckpt.model, ckpt.tokenizer, SamplingConfig(temperature=0.8, top_k=8, seed=5))
    library.record_steps = True
    assert said == "".join(library.send("what is an lstm?")).rstrip(" ")
    reply = library.turns[0].reply
    steps = reply.steps

    chat.mark()
    page.get_by_text("Token view").click()
    chat.rerun_done()
    view = chat.bubbles().nth(1).locator(".vega-embed").first
    hits = view.locator("g.hits_marks path")
    page.wait_for_function("([el, n]) => el.querySelectorAll('g.hits_marks path').length === n",
                           arg=[view.element_handle(), len(steps)])
    drawn = view.locator("g.letters_marks text").evaluate_all("els => els.map(e => e.textContent)")
    assert [t.strip() for t in drawn] == [t.strip() for t in labels(ckpt.tokenizer, reply.ids)]  # (a space: a gap)

    # Hovering a token lists its candidates with the model's probability and the one it
    # was sampled from; pick a token where top-k removed one, if there is one.
    n = next((k for k, s in enumerate(steps) if any(s.removed_by(i) for i in range(len(s.candidates)))), 0)
    step = steps[n]
    shown = hover_until_tooltip(page, hits.nth(n), f"step {n + 1}")
    assert shown.split()[:2] == ["step", str(n + 1)]
    for i, row in enumerate(step.probs[:10]):
        assert f"model {row[0]:.3f} → {row[-1]:.3f}" in shown, (i, shown)
    page.set_viewport_size({"width": 1280, "height": 1900})  # the whole reply, nothing over it
    chat.bubbles().nth(1).screenshot(path=str(ARTIFACTS / "token-view.png"))

    # A click on the token (on its letter) shows its table: a column per filter stage.
    letter = view.locator("g.letters_marks text").nth(n).bounding_box()
    chat.mark()
    page.mouse.click(letter["x"] + letter["width"] / 2, letter["y"] + letter["height"] / 2)
    chat.rerun_done()
    page.wait_for_function(f"() => document.querySelector('input[aria-label=\"Token\"]')?.value === '{n + 1}'")
    grid = chat.bubbles().nth(1).locator('[data-testid="stDataFrame"] table[role="grid"]')
    cells = grid.locator('[role="gridcell"]').all_inner_texts()
    headers = grid.locator('th, [role="columnheader"]').all_inner_texts()
    assert [h for h in headers if h.strip()][-4:] == ["model", "temperature", "top-k · sampled from",
                                                      "removed by"]
    width = 6  # token, sampled, model, temperature, top-k, removed by
    rows = [cells[i:i + width] for i in range(0, len(cells), width)]
    assert len(rows) == len(step.candidates)
    for row, probs, i in zip(rows, step.probs, range(len(rows))):
        assert [float(x) for x in row[2:5]] == pytest.approx(probs, abs=1e-6)
        assert row[1] == ("✓" if step.candidates[i] == reply.ids[n] else "")
        assert row[5] == (step.removed_by(i) or "")
    assert page.locator('[data-testid="stException"]').count() == 0
