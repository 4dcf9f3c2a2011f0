"""Screenshots of the dashboard's three pages for the README (docs/images/dashboard-*.png).

    python scripts/dashboard_screenshots.py --db morphnas.db [--search ID] [--out docs/images]

Opens the searches page, the search page (of ``--search``, default the search with the most
trials) and the trial page of its best trial in headless Chromium (``/usr/bin/chromium``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from morphnas.dashboard.app import start_dashboard  # noqa: E402
from morphnas.dashboard.data import DatabaseSource  # noqa: E402
from morphnas.dashboard.payload import best_trial  # noqa: E402
from morphnas.runner import database_url  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--search")
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    source = DatabaseSource.from_url(database_url(args.db))
    search_id = args.search or max(source.searches(), key=lambda s: s.trial_count).id
    best = best_trial(source.trials(search_id))
    if best is None:
        raise SystemExit("the search has no completed trial")
    running = start_dashboard(source)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pages = [
        ("dashboard-searches.png", "", {"width": 1280, "height": 360}),
        ("dashboard-search.png", f"search/{search_id}", {"width": 1280, "height": 1640}),
        ("dashboard-trial.png", f"trial/{best.id}", {"width": 1280, "height": 900}),
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=args.chromium, headless=True, args=ARGS
        )
        for name, path, viewport in pages:
            page = browser.new_page(viewport=viewport)
            page.goto(running.url + path)
            page.wait_for_function("window.morphnas && window.morphnas.ready", timeout=60_000)
            page.wait_for_timeout(500)  # the curves load after the first draw
            page.screenshot(path=str(out / name))
            print(f"wrote {out / name}")
            page.close()
        browser.close()
    running.stop()
    source.close()


if __name__ == "__main__":
    main()
