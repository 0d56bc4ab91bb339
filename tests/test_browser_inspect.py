"""The Inspect page as a person sees it, in Debian's headless Chromium: on the default model
(2x512, BPE, copy head) and on the char-level tiny model, the text runs along the x axis one
token per column, the explanation of the values is there, and no label of any chart is cut
off. Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from browser_harness import CHROMIUM, IDLE, Chat, app_server, browser_page
from chatbot.lm.checkpoint import load_checkpoint
from chatbot.lm.units import pieces, token_labels
from conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "browser"
DEFAULT = ROOT / "models" / "default"
CHARTS = 7  # tracking units, one unit over the text, kept per unit, forget, input, output, cell

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's Chromium: apt-get install -y chromium (.ci/run does)")

X_AXIS = """() => {
  const svg = document.querySelector('.vega-embed svg');
  const axis = [...svg.querySelectorAll('g.role-axis')]
    .find(g => (g.getAttribute('aria-label') || '').startsWith('X-axis'));
  return [...axis.querySelectorAll('.role-axis-label text')].map(t => t.textContent);
}"""
# Every text of every chart (axis labels, colour-bar labels and titles) inside its chart's
# drawing, and every chart inside the page's column: nothing is cut off.
CUT = """() => {
  const bad = [];
  const column = document.querySelector('[data-testid="stMainBlockContainer"]').getBoundingClientRect();
  document.querySelectorAll('.vega-embed svg').forEach((svg, n) => {
    const box = svg.getBoundingClientRect();
    if (box.right > column.right + 1) bad.push(`chart ${n} runs past the column`);
    svg.querySelectorAll('text').forEach(t => {
      const r = t.getBoundingClientRect();
      const out = r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1;
      if (r.width && out)
        bad.push(`chart ${n}: "${t.textContent}" is cut`);
    });
  });
  return bad;
}"""


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    base = tmp_path_factory.mktemp("inspect")
    models = base / "models"
    shutil.copytree(tiny_checkpoint, models / "tiny", ignore=shutil.ignore_patterns("resume"))
    if DEFAULT.is_dir():
        (models / "default").symlink_to(DEFAULT)
    with app_server(models, base / "data", base / "streamlit.log") as (url, _):
        yield url, models


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page() as page:
        yield page


def drawn(page, chat: Chat):
    """Until the page's script run is over and every chart is drawn."""
    chat.rerun_done()
    page.wait_for_function(f"""() => document.querySelectorAll('.vega-embed svg').length >= {CHARTS}
                                     && !document.querySelector('[data-testid="stSkeleton"]')""")
    page.wait_for_function(IDLE)


def expected_axis(page, folder: Path) -> list[str]:
    """The first 36 tokens of the text in the box, as the model's own tokenizer splits them."""
    text = page.locator("textarea").first.input_value()
    tokenizer = load_checkpoint(folder).tokenizer
    ids = tokenizer.encode(text)
    return token_labels(pieces(tokenizer, ids), ids, "␣")[:36]


def check_page(page, folder: Path, name: str):
    assert page.locator('[data-testid="stException"]').count() == 0
    axis = page.evaluate(X_AXIS)
    assert axis == expected_axis(page, folder)
    assert page.evaluate(CUT) == []
    for words in ("The cell state C is not bounded.", "Why the forget gate sits near 1.",
                  "Units that follow something in the text"):
        assert page.get_by_text(words).first.is_visible()
    page.screenshot(path=str(ARTIFACTS / f"inspect-{name}.png"), full_page=True)
    return axis


def test_the_inspect_page_in_a_real_browser(server, page):
    url, models = server
    chat = Chat(page, url)
    chat.seen = 0
    page.goto(url + "/inspect")
    if DEFAULT.is_dir():  # the default model is listed first: word pieces along the axis
        drawn(page, chat)
        axis = check_page(page, models / "default", "default-model")
        assert any(len(label) > 1 for label in axis)
        picker = page.locator('[data-testid="stSelectbox"]').first
        chat.mark()
        picker.click()
        page.get_by_role("option", name=re.compile("^tiny")).click()
    drawn(page, chat)
    axis = check_page(page, models / "tiny", "tiny-model")
    assert all(len(label) == 1 for label in axis)  # one character per column
    assert "".join(axis).startswith("She␣said␣")
