"""Make docs/inspect.png, the README's picture of the Inspect page: the app on models/ (the
default model) in headless Chromium, the Inspect page on its own example text.

    python docs/inspect_screenshot.py [--models models] [--out docs/inspect.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser_harness import IDLE, app_server, browser_page  # noqa: E402

CHARTS = 7  # tracking units, one unit over the text, kept per unit, four gates (an LSTM)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "inspect.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data, \
            app_server(args.models.resolve(), Path(data), Path(data) / "streamlit.log") as (url, _), \
            browser_page() as page:
        # The app scrolls inside itself: a tall window shows it all. (Chromium then slows its
        # animation frames, so the waits poll by the clock.)
        page.set_viewport_size({"width": 1000, "height": 4200})
        page.goto(url + "/inspect")
        page.wait_for_function(f"""() => document.querySelectorAll('.vega-embed svg').length >= {CHARTS}
                                         && !document.querySelector('[data-testid="stSkeleton"]')""", polling=500)
        page.wait_for_function(IDLE, polling=500)
        # From the text box to the end of the tracking units' heatmap, across the page's column.
        column = page.locator('[data-testid="stMainBlockContainer"]').bounding_box()
        box = page.locator('[data-testid="stTextArea"]').bounding_box()
        chart = page.locator('[data-testid="stVegaLiteChart"]').first.bounding_box()
        left, top = box["x"] - 16, box["y"] - 12
        page.screenshot(path=str(args.out), clip={"x": left, "y": top, "width": column["x"] + column["width"] - left,
                                                  "height": chart["y"] + chart["height"] + 12 - top})
    print(args.out)


if __name__ == "__main__":
    main()
