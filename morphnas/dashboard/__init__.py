"""A read-only web dashboard of searches, and static HTML reports (``morphnas dashboard``,
``morphnas report``, ``morphnas serve --dashboard-port``).

``data`` reads a search from a database or a server; ``payload`` turns it into the JSON the
pages draw; ``app`` serves the pages (Starlette on uvicorn); ``report`` writes one
self-contained HTML file; ``cli`` wires the commands. The pages are ``templates/page.html``
filled by ``static/dashboard.js``, with uPlot (``static/uPlot.iife.min.js``, MIT) for charts.
Needs the ``dashboard`` extra (starlette, uvicorn).
"""
