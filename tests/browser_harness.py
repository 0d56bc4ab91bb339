"""The real-browser harness: `streamlit run app.py` on a free port, driven by Playwright in
Debian's headless Chromium. Used by tests/test_browser.py and bench/ui_stream.py."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_server(models: Path, data: Path, log_path: Path):
    """Run the app on `models` and `data` folders; yields (url, process)."""
    port = free_port()
    env = {**os.environ, "LSTM_CHAT_MODELS": str(models), "LSTM_CHAT_DATA": str(data)}
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the app did not start:\n{log_path.read_text()}")
            time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@contextlib.contextmanager
def browser():
    """Headless Chromium; call new_page(browser) for each tab (each is its own session)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# Counts the app's finished script runs in the page: each time stApp's script state becomes
# "notRunning". Kept in sessionStorage, so it only grows within a tab, across reloads too.
RUN_COUNTER = """
window.__lstmRuns = Number(sessionStorage.getItem('lstmRuns') || 0);
new MutationObserver(records => {
  for (const r of records) {
    if (r.target.getAttribute('data-test-script-state') === 'notRunning' && r.oldValue !== 'notRunning') {
      window.__lstmRuns += 1;
      sessionStorage.setItem('lstmRuns', String(window.__lstmRuns));
    }
  }
}).observe(document, {subtree: true, attributes: true, attributeOldValue: true,
                      attributeFilter: ['data-test-script-state']});
"""
IDLE = """() => document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state') === 'notRunning'
                 && !document.querySelector('[data-testid="stStatusWidget"]')"""
# A script run has begun since the last wait (or begun and ended: RUN_COUNTER counted it).
RUN_SEEN = """seen => (window.__lstmRuns || 0) > seen || document.querySelector('[data-testid="stApp"]')
                          ?.getAttribute('data-test-script-state') === 'running'"""
# Every wait is for a condition; the limit only bounds a hang. It is generous because a busy
# machine (a 2-core CI runner training alongside) loads a model or runs a script many times slower.
WAIT_MS = 300_000


def repeat_until(page, act, condition: str, arg=None, every_ms: int = 10_000, limit_s: float = WAIT_MS / 1000):
    """act(), then wait up to every_ms for the JS `condition` (a function of arg) to return
    something truthy, which is returned; act() again after each wait that ran out, until
    limit_s have passed (then Playwright's TimeoutError). For actions a busy page can drop."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.monotonic() + limit_s
    while True:
        act()
        try:
            return page.wait_for_function(condition, arg=arg, timeout=every_ms).json_value()
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise


def new_page(chromium):
    """A tab in a fresh browser context (its own cookies), or pass a BrowserContext for
    another tab of that context (the same browser, to a server: the same person)."""
    if hasattr(chromium, "cookies"):  # a BrowserContext: its tabs share its viewport
        page = chromium.new_page()
    else:
        page = chromium.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(WAIT_MS)
    page.set_default_navigation_timeout(WAIT_MS)
    page.add_init_script(RUN_COUNTER)
    return page


@contextlib.contextmanager
def browser_page():
    with browser() as chromium:
        yield new_page(chromium)


class Chat:
    """The page as a person uses it."""

    def __init__(self, page, url, shots_dir: Path | None = None):
        self.page, self.url, self.shots, self.shots_dir = page, url, 0, shots_dir
        self.seen = 0  # finished script runs (RUN_COUNTER) this harness has waited for

    def runs(self) -> int:
        return self.page.evaluate("window.__lstmRuns || 0")

    def mark(self):
        """Before an action: wait until the page is idle, so rerun_done waits for the run the
        action starts and not for one already under way."""
        self.page.wait_for_function(IDLE)
        self.seen = self.runs()

    def open(self, conversation: str | None = None):
        self.seen = self.runs() if self.page.url.startswith(self.url) else 0
        self.page.goto(self.url + (f"/?c={conversation}" if conversation else ""))
        self.page.wait_for_selector('[data-testid="stChatInput"] textarea')
        self.rerun_done()

    def conversation(self) -> str:
        """The conversation id the page keeps in its address (?c=...)."""
        self.page.wait_for_url(re.compile(r"[?&]c=\w+"))
        return re.search(r"[?&]c=(\w+)", self.page.url).group(1)

    def fix_seed(self, seed: int):
        """Tick Fixed seed until the app has taken it (its Seed box is enabled), then set the
        seed. Under load a click can tick the box on the page while the app never hears of it
        (no run, the Seed box stays disabled); then ticking it again would only wait, so the
        box is unticked and ticked once more."""
        self.mark()
        box = self.page.locator('label:has-text("Fixed seed") input[type="checkbox"]')
        label = self.page.get_by_text("Fixed seed")

        def tick():
            if box.is_checked():
                label.click()
            label.click()
        repeat_until(self.page, tick, """() => !!document.querySelector('input[aria-label="Seed"]:not([disabled])')""")
        self.rerun_done()
        self.set_number("Seed", seed)

    def shot(self, name: str):
        self.shots += 1
        if self.shots_dir:
            self.page.screenshot(path=str(self.shots_dir / f"{self.shots:02d}-{name}.png"), full_page=True)

    def bubbles(self):
        return self.page.locator('[data-testid="stChatMessage"]')

    def text(self, index: int) -> str:
        bubble = self.bubbles().nth(index)
        return bubble.locator('[data-testid="stMarkdownContainer"]').first.inner_text().replace("\u00a0", " ")

    def type(self, message: str):
        box = self.page.locator('[data-testid="stChatInput"] textarea')
        box.fill(message)
        box.press("Enter")

    def wait_for_reply(self, count: int):
        """Until bubble `count` (an assistant reply) carries its stats caption: the run ended."""
        self.page.wait_for_function(
            """n => { const m = document.querySelectorAll('[data-testid="stChatMessage"]');
                      return m.length >= n && m[n - 1].querySelector('[data-testid="stCaptionContainer"]'); }""",
            arg=count)
        self.page.wait_for_selector('[data-testid="stChatInputStopButton"]', state="detached")
        self.page.wait_for_function(IDLE)
        self.seen = self.runs()  # the reply's run is over: the next wait is for a later one

    def say(self, message: str) -> str:
        before = self.bubbles().count()
        self.type(message)
        self.wait_for_reply(before + 2)
        return self.text(before + 1)

    def start_run(self, act):
        """act() until the script run it starts is seen, begun or already over. Under load a
        click or an Enter can reach a widget before it is ready for it: nothing changes and no
        run starts. So act() is called again after each 10 s without a run; it must check
        that its change has not already been made (a second click would undo the first).
        The limit is the usual one."""
        repeat_until(self.page, act, RUN_SEEN, self.seen, every_ms=10_000)

    def rerun_done(self):
        """Until a script run that the last action started has finished and the page is idle:
        the page's run count (RUN_COUNTER) passes the one seen after the previous wait."""
        self.page.wait_for_function(f"seen => (window.__lstmRuns || 0) > seen && ({IDLE})()", arg=self.seen)
        self.seen = self.runs()

    def set_number(self, label: str, value: float):
        self.mark()
        box = self.page.locator(f'input[aria-label="{label}"]')
        if box.input_value() == str(value):
            return  # the same value starts no script run, so there is none to wait for

        def commit():
            if box.input_value() != str(value):
                box.fill(str(value))
            box.press("Enter")
        self.start_run(commit)
        self.rerun_done()

    def pick_model(self, name: str):
        picker = self.page.locator('[data-testid="stSelectbox"]').first
        self.mark()
        if picker.locator("input").input_value().startswith(name + " "):
            return  # already chosen (a model trained in the browser is): no script run to wait for
        picker.click()
        self.page.get_by_role("option", name=re.compile(f"^{re.escape(name)} ")).click()
        self.rerun_done()
        # The model is loaded when the picker shows it and the chat box takes input again.
        # The picker is a combobox: its choice is the input's value, not text. Looked up afresh
        # each time, since a rerun may draw it as a new element.
        self.page.wait_for_function(
            """name => (document.querySelector('[data-testid="stSelectbox"] input')?.value || '').startsWith(name + ' ')""",
            arg=name)
        self.page.wait_for_selector('[data-testid="stChatInput"] textarea:not([disabled])')
