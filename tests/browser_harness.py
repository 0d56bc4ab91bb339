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
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            browser.close()


class Chat:
    """The page as a person uses it."""

    def __init__(self, page, url, shots_dir: Path | None = None):
        self.page, self.url, self.shots, self.shots_dir = page, url, 0, shots_dir

    def open(self):
        self.page.goto(self.url)
        self.page.wait_for_selector('[data-testid="stChatInput"] textarea')

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

    def say(self, message: str) -> str:
        before = self.bubbles().count()
        self.type(message)
        self.wait_for_reply(before + 2)
        return self.text(before + 1)

    def rerun_done(self):
        self.page.wait_for_timeout(300)
        self.page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")

    def set_number(self, label: str, value: int):
        box = self.page.locator(f'input[aria-label="{label}"]')
        box.fill(str(value))
        box.press("Enter")
        self.rerun_done()

    def pick_model(self, name: str):
        self.page.locator('[data-testid="stSelectbox"]').first.click()
        self.page.get_by_role("option", name=re.compile(f"^{re.escape(name)} ")).click()
        self.rerun_done()
