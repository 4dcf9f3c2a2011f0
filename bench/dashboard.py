"""How fast the dashboard's search page is on a 1,000-trial search, in headless Chromium.

    python bench/dashboard.py [--trials 1000] [--repeats 5] [--json bench/results/dashboard.json]

Measured with the browser's own clocks:

* time to interactive (the first visit, with the server's FLOPs cache cold, then warm visits):
  ``performance.now()`` when the page has drawn everything (charts, tree,
  table) and handles input (``window.morphnas.readyAt``, milliseconds from the start of the
  navigation), next to the Navigation Timing ``domInteractive`` and ``loadEventEnd``;
* live-update latency: a trial is reported to the database (its ``updated_at`` is the moment it
  finished); the page's ``Date.now()`` when it has drawn that trial (``window.morphnas.
  renderedAt``), minus that moment. The page polls every second, so this is at most about a
  second plus one fetch and redraw.

Also: the server's CPU seconds (process time) to build the page's JSON, and its size. The search
is synthetic (tests/dashboard/synthetic.py: real architectures, morphs and measurements, made-up
scores; every 17th trial FAILED). Needs the system Chromium (``/usr/bin/chromium``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from morphnas.dashboard import payload  # noqa: E402
from morphnas.dashboard.app import start_dashboard  # noqa: E402
from morphnas.dashboard.data import DatabaseSource, flops_of  # noqa: E402
from morphnas.server.service import SearchService  # noqa: E402
from morphnas.storage import Repository  # noqa: E402
from tests.dashboard.synthetic import add_trial, build_search  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARGS.append("--disable-component-update")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--db", help="a SQLite file to keep the search in (reused if there)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        repo = Repository.from_url(f"sqlite:///{args.db or tmp + '/bench.db'}")
        found = [s for s in repo.list_searches(1000)[0] if s.config.name == "bench"]
        if found and found[0].trial_count >= args.trials:  # --db: a search built before
            search_id = found[0].id
        else:
            started = time.perf_counter()
            search_id = build_search(repo, args.trials, name="bench", fail_every=17)
            print(f"built a {args.trials}-trial search in {time.perf_counter() - started:.0f} s")
        trials = repo.count_trials(search_id)
        source = DatabaseSource(repo)
        json_cpu = []
        for _ in range(2):  # cold (every architecture parsed for its FLOPs), then warm
            cpu = time.process_time()
            body = payload.to_json(
                payload.search_payload(source.search(search_id), source.trials(search_id))
            )
            json_cpu.append(time.process_time() - cpu)
        flops_of.cache_clear()  # the first visit below finds the cache cold
        running = start_dashboard(source, warm=False)
        page_url = f"{running.url}search/{search_id}"
        figures: dict[str, object] = {
            "trials": trials,
            "json_bytes": len(body.encode()),
            "json_cpu_seconds_cold": round(json_cpu[0], 3),
            "json_cpu_seconds_warm": round(json_cpu[1], 3),
        }
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=args.chromium, headless=True, args=ARGS
            )
            ready, interactive, loaded = [], [], []
            for _ in range(args.repeats + 1):  # the first visit finds the FLOPs cache cold
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(page_url)
                page.wait_for_function("window.morphnas && window.morphnas.ready", timeout=60_000)
                ready.append(page.evaluate("window.morphnas.readyAt"))
                nav = page.evaluate(
                    "(() => { const n = performance.getEntriesByType('navigation')[0];"
                    " return [n.domInteractive, n.loadEventEnd]; })()"
                )
                interactive.append(nav[0])
                loaded.append(nav[1])
                assert page.locator("svg.tree circle[data-trial]").count() == trials
                page.close()
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(page_url)
            page.wait_for_function("window.morphnas && window.morphnas.ready", timeout=60_000)
            service, rng = SearchService(repo), random.Random(0)
            latencies = []
            for k in range(args.repeats):
                time.sleep(rng.uniform(0.0, 1.0))  # land anywhere in the page's polling period
                trial_id = add_trial(service, repo, search_id, rng)
                finished = repo.get_trial(trial_id).updated_at
                page.wait_for_function(
                    f"window.morphnas.trialCount === {trials + k + 1}", timeout=30_000
                )
                latencies.append(page.evaluate("window.morphnas.renderedAt") / 1000 - finished)
            browser.close()
        running.stop()
        repo.close()
    figures |= {
        "ready_ms_first_visit_cold_cache": round(ready[0]),
        "ready_ms_median_warm": round(statistics.median(ready[1:])),
        "ready_ms_max_warm": round(max(ready[1:])),
        "dom_interactive_ms_median": round(statistics.median(interactive)),
        "load_event_end_ms_median": round(statistics.median(loaded)),
        "live_update_s_median": round(statistics.median(latencies), 2),
        "live_update_s_max": round(max(latencies), 2),
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 1),  # others' work slows all this
    }
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
