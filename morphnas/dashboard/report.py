"""``morphnas report``: one self-contained HTML file with a search's plots.

The file is the dashboard's search page with everything inlined: the stylesheet, uPlot, the
page script and the search's data as JSON (every trial, the architectures and morph paths the
trial panel draws, and the learning curves of the best :data:`REPORT_CURVES` trials). It fetches
nothing, so it opens offline, attached to a ticket or a paper.
"""

from __future__ import annotations

from importlib import resources

from morphnas.dashboard import payload
from morphnas.dashboard.app import _attr, _template
from morphnas.dashboard.data import Source, layers_of

#: Trials whose learning curves a report embeds (the best ones).
REPORT_CURVES = 10


def _static(name: str) -> str:
    return resources.files("morphnas.dashboard").joinpath("static", name).read_text("utf-8")


def _inline_script(text: str) -> str:
    """A shipped script, checked to hold nothing that would end its <script> element early."""
    if "</script" in text.lower() or "<!--" in text:
        raise ValueError("a shipped script cannot be inlined: it contains </script or <!--")
    return text


def _inline_json(text: str) -> str:
    """JSON safe inside <script>: every ``<`` (only ever inside strings) as ``\\u003c``."""
    return text.replace("<", "\\u003c")


def report_html(source: Source, search_id: str) -> str:
    """The report of search ``search_id`` as one HTML document."""
    search = source.search(search_id)
    trials = source.trials(search_id)
    curves = source.curves(search_id, payload.curve_ids(trials, REPORT_CURVES))
    data = {
        "search": payload.search_payload(
            search, trials, curves, payload.pareto_fronts(source, search_id, trials)
        ),
        "layers": {t.id: layers_of(t.architecture) for t in trials},
        "operations": {t.id: list(t.operations) for t in trials},
    }
    head = (
        f"<style>{_static('uPlot.min.css')}</style>\n<style>{_static('dashboard.css')}</style>"
        '\n<meta name="generator" content="morphnas report">'
    )
    scripts = (
        f"<script>{_inline_script(_static('uPlot.iife.min.js'))}</script>\n"
        f"<script>{_inline_script(_static('dashboard.js'))}</script>"
    )
    embedded = (
        '<script id="morphnas-data" type="application/json">'
        + _inline_json(payload.to_json(data))
        + "</script>"
    )
    return _template("page.html").substitute(
        kind="report",
        ident=_attr(search.id),
        title=_attr(f"morphnas report: {search.name}"),
        head=head,
        scripts=scripts,
        data=embedded,
    )


def write_report(source: Source, search_id: str, path: str) -> int:
    """Write the report to ``path``; returns its size in bytes."""
    text = report_html(source, search_id)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return len(text.encode("utf-8"))
