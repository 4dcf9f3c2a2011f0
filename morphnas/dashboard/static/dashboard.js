/* morphnas dashboard: draws the searches, search and trial pages from the JSON API (or, in a
 * static report, from the JSON embedded in the page). Charts: uPlot (static/uPlot.iife.min.js);
 * the genealogy tree and the architecture are SVG laid out here. No other dependency.
 *
 * window.morphnas exposes what tests and the benchmark read: ready (first render done),
 * readyAt (performance.now() then), trialCount and renderedAt (Date.now() of the last render),
 * charts (the uPlot instances by name). */
(function () {
  'use strict';
  const SVGNS = 'http://www.w3.org/2000/svg';
  const POLL_MS = 1000; // the search page: a finished trial shows within about a second
  const SEARCHES_POLL_MS = 5000; // the searches page reads every search's trials
  const embedded = document.getElementById('morphnas-data');
  const REPORT = embedded ? JSON.parse(embedded.textContent) : null;
  const page = document.body.dataset.page;
  const ident = document.body.dataset.id;
  const state = window.morphnas = {
    ready: false, readyAt: null, trialCount: 0, renderedAt: null, updates: 0, charts: {},
  };
  const main = document.getElementById('main');

  // ------------------------------------------------------------------ small helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') node.textContent = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }
  const fmtScore = (v) => (v === null || v === undefined ? '–' : v.toFixed(4));
  const fmtInt = (v) => (v === null || v === undefined ? '–' : Math.round(v).toLocaleString('en'));
  function fmtBig(v) {
    if (v === null || v === undefined) return '–';
    const units = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
    for (const [n, u] of units) if (Math.abs(v) >= n) return (v / n).toFixed(v / n >= 100 ? 0 : 1) + u;
    return String(Math.round(v));
  }
  function fmtSec(v) {
    if (v === null || v === undefined) return '–';
    if (v < 120) return v.toFixed(1) + ' s';
    if (v < 7200) return (v / 60).toFixed(1) + ' min';
    return (v / 3600).toFixed(1) + ' h';
  }
  const fmtTime = (t) => (t ? new Date(t * 1000).toLocaleString() : '–');
  const badge = (s) => el('span', { class: 'badge ' + s, text: s });
  const trialHref = (id) => (REPORT ? '#trial-' + id : '/trial/' + id);

  async function getJSON(url, etag) {
    const headers = etag ? { 'If-None-Match': etag } : {};
    const response = await fetch(url, { cache: 'no-store', headers, credentials: 'same-origin' });
    if (response.status === 304) return { changed: false, etag };
    if (!response.ok) {
      let message = response.status + ' ' + response.statusText;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return { changed: true, etag: response.headers.get('etag'), data: await response.json() };
  }
  function showError(err) {
    main.replaceChildren(el('p', { class: 'error', text: 'could not load: ' + err.message }));
  }
  function markReady(count) {
    state.trialCount = count;
    state.renderedAt = Date.now();
    state.updates += 1;
    if (!state.ready) {
      state.ready = true;
      state.readyAt = performance.now();
      document.body.dataset.ready = '1';
    }
    document.body.dataset.trials = String(count);
  }
  function poll(url, render, every) {
    let etag = null;
    const live = document.getElementById('live');
    async function tick() {
      try {
        const got = await getJSON(url, etag);
        if (got.changed) { etag = got.etag; render(got.data); }
        live.textContent = 'live · updated ' + new Date().toLocaleTimeString();
      } catch (err) {
        if (!state.ready) showError(err);
        live.textContent = 'live · ' + err.message;
      }
      setTimeout(tick, every || POLL_MS);
    }
    tick();
  }

  // ------------------------------------------------------------------ sortable tables
  /* columns: [{key, label, num, get(row) -> sort value, cell(row) -> node|string}] */
  function sortableTable(columns, rows, opts) {
    const table = el('table', { class: 'data' });
    const thead = el('thead');
    const tbody = el('tbody');
    const sort = opts.sort || { key: columns[0].key, dir: 1 };
    const headRow = el('tr');
    for (const col of columns) {
      const th = el('th', { class: col.num ? 'num' : null, 'data-key': col.key, text: col.label });
      th.addEventListener('click', () => {
        sort.dir = sort.key === col.key ? -sort.dir : (col.num ? -1 : 1);
        sort.key = col.key;
        fill();
      });
      headRow.append(th);
    }
    thead.append(headRow);
    table.append(thead, tbody);
    let current = rows;
    let showAll = false;
    function fill() {
      const col = columns.find((c) => c.key === sort.key) || columns[0];
      const keep = opts.filter ? current.filter(opts.filter) : current;
      const sorted = keep.slice().sort((a, b) => {
        const x = col.get(a); const y = col.get(b);
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * sort.dir;
      });
      for (const th of headRow.children) {
        th.classList.toggle('sorted-asc', th.dataset.key === sort.key && sort.dir > 0);
        th.classList.toggle('sorted-desc', th.dataset.key === sort.key && sort.dir < 0);
      }
      const frag = document.createDocumentFragment();
      const shown = opts.limit && !showAll ? sorted.slice(0, opts.limit) : sorted;
      for (const row of shown) {
        const tr = el('tr', opts.rowAttrs ? opts.rowAttrs(row) : {});
        for (const c of columns) {
          const value = c.cell ? c.cell(row) : c.get(row);
          tr.append(el('td', { class: c.cls || (c.num ? 'num' : null) }, value === null ? '–' : value));
        }
        frag.append(tr);
      }
      if (shown.length < sorted.length) {  // a long table draws its first rows until asked
        const more = el('button', { class: 'show-all', text: `show all ${sorted.length} rows`,
          onclick: () => { showAll = true; fill(); } });
        frag.append(el('tr', {}, el('td', { colspan: columns.length },
          `${shown.length} of ${sorted.length} rows (sorted and filtered over all of them) `, more)));
      }
      tbody.replaceChildren(frag);
    }
    fill();
    return { table, refresh: fill, setRows(r) { current = r; fill(); } };
  }

  // ------------------------------------------------------------------ searches page
  function searchesPage() {
    setCrumbs([]);
    let view = null;
    const render = (data) => {
      const rows = data.searches;
      if (!view) {
        const columns = [
          { key: 'name', label: 'search', get: (r) => r.name,
            cell: (r) => el('a', { href: '/search/' + r.id, text: r.name }) },
          { key: 'state', label: 'state', get: (r) => r.state, cell: (r) => badge(r.state) },
          { key: 'policy', label: 'policy', get: (r) => r.policy },
          { key: 'trials', label: 'trials', num: true, get: (r) => r.trials },
          { key: 'bystate', label: 'by state', get: (r) => r.counts.COMPLETED,
            cell: (r) => Object.entries(r.counts).filter(([, n]) => n)
              .map(([s, n]) => n + ' ' + s.toLowerCase()).join(', ') || '–' },
          { key: 'best', label: 'best score', num: true, get: (r) => r.best, cell: (r) => fmtScore(r.best) },
          { key: 'spent', label: 'compute spent', num: true, get: (r) => r.spent, cell: (r) => fmtSec(r.spent) },
          { key: 'last', label: 'last activity', get: (r) => r.last_activity, cell: (r) => fmtTime(r.last_activity) },
        ];
        view = sortableTable(columns, rows, {
          sort: { key: 'last', dir: -1 },
          rowAttrs: (r) => ({ 'data-search': r.id }),
        });
        main.replaceChildren(el('h1', { text: 'Searches' }),
          el('div', { class: 'panel wide' }, view.table));
      } else view.setRows(rows);
      if (!rows.length) main.append(el('p', { class: 'muted', text: 'no search yet' }));
      markReady(rows.length);
    };
    poll('/api/searches', render, SEARCHES_POLL_MS);
  }

  function setCrumbs(parts) {
    const nav = document.getElementById('crumbs');
    nav.replaceChildren(...parts.flatMap((p) => [' / ', p]));
  }

  // ------------------------------------------------------------------ charts (uPlot)
  function chartWidth(container) { return Math.max(320, container.clientWidth - 8); }

  function pointsSeries(label, color) {
    return { label, stroke: color, fill: color + '55', width: 0, paths: () => null,
      points: { show: true, size: 6, stroke: color, fill: color + '99' } };
  }

  function plot(name, container, opts, data) {
    const old = state.charts[name];
    if (old) { old.setData(data); return old; }
    const chart = new uPlot(Object.assign({ width: chartWidth(container), height: 260 }, opts), data, container);
    state.charts[name] = chart;
    return chart;
  }

  /* The time axis is in minutes, or seconds while the search is under two minutes old. */
  function timeUnit(trials) {
    let t0 = Infinity; let t1 = -Infinity;
    for (const t of trials) { t0 = Math.min(t0, t.created); if (t.finished !== null) t1 = Math.max(t1, t.finished); }
    return { t0, scale: t1 - t0 < 120 ? 1 : 60, label: t1 - t0 < 120 ? 'seconds since start' : 'minutes since start' };
  }

  function progressData(trials, byTime) {
    const scored = trials.filter((t) => t.score !== null && (!byTime || t.finished !== null));
    if (byTime) scored.sort((a, b) => a.finished - b.finished);
    const unit = timeUnit(trials);
    const xs = []; const ys = []; const best = [];
    let top = null;
    for (const t of scored) {
      xs.push(byTime ? (t.finished - unit.t0) / unit.scale : t.n);
      ys.push(t.score);
      top = top === null ? t.score : Math.max(top, t.score);
      best.push(top);
    }
    return [xs, ys, best];
  }

  function progressCharts(box, trials) {
    const common = (xlabel) => ({
      scales: { x: { time: false } },
      axes: [{ label: xlabel, incrs: xlabel === 'trial number' ? WHOLE : undefined }, { label: 'score' }],
      series: [{ label: xlabel }, pointsSeries('trial score', '#2563eb'),
        { label: 'best so far', stroke: '#ea580c', width: 2, points: { show: false } }],
      legend: { live: false },
    });
    plot('byTrial', box.byTrial, common('trial number'), progressData(trials, false));
    const label = timeUnit(trials).label;
    if (state.charts.byTime && state.charts.byTime._label !== label) {
      state.charts.byTime.destroy(); delete state.charts.byTime; box.byTime.replaceChildren();
    }
    plot('byTime', box.byTime, common(label), progressData(trials, true))._label = label;
  }

  const WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000];
  const PALETTE = ['#2563eb', '#ea580c', '#16a34a', '#9333ea', '#dc2626', '#0891b2', '#ca8a04',
    '#db2777', '#4b5563', '#65a30d'];

  function curvesData(curves, trialIds, numbers, metric) {
    const steps = new Set();
    for (const id of trialIds) for (const [s] of (curves[id] || {})[metric] || []) steps.add(s);
    const xs = [...steps].sort((a, b) => a - b);
    const index = new Map(xs.map((s, i) => [s, i]));
    const data = [xs];
    const series = [{ label: 'epoch' }];
    trialIds.forEach((id, k) => {
      const ys = new Array(xs.length).fill(null);
      for (const [s, v] of (curves[id] || {})[metric] || []) ys[index.get(s)] = v;
      data.push(ys);
      series.push({ label: 'trial ' + numbers[id], stroke: PALETTE[k % PALETTE.length], width: 1.6,
        spanGaps: true, points: { show: true, size: 4 } });
    });
    return { data, series };
  }

  function metricsOf(curves) {
    const names = new Set();
    for (const by of Object.values(curves)) for (const n of Object.keys(by)) names.add(n);
    const order = ['val_accuracy', 'objective'];
    return [...names].sort((a, b) => (order.indexOf(b) - order.indexOf(a)) || a.localeCompare(b));
  }

  function curvesChart(name, container, curves, trialIds, numbers, metric) {
    const { data, series } = curvesData(curves, trialIds, numbers, metric);
    if (state.charts[name]) { state.charts[name].destroy(); delete state.charts[name]; }
    container.replaceChildren();
    if (data[0].length === 0) {
      container.append(el('p', { class: 'muted', text: 'no per-epoch measurements stored for these trials' }));
      return;
    }
    plot(name, container, { scales: { x: { time: false } }, series, legend: { live: false },
      axes: [{ label: 'epoch', incrs: WHOLE }, { label: metric }] }, data);
  }

  /* Every scored trial with a positive cost on this axis, cheapest first: [xs, scores, front],
   * where front holds the score of a trial on the axis's Pareto front (payload `pareto`) and
   * null elsewhere, so the front gets its own marker and a line joining its points. */
  function scatterData(trials, axis, front) {
    const onFront = new Set(front || []);
    const pts = trials.filter((t) => t.score !== null && t[axis] !== null && t[axis] !== undefined && t[axis] > 0)
      .sort((a, b) => a[axis] - b[axis] || a.n - b.n);
    return [pts.map((t) => t[axis]), pts.map((t) => t.score), pts.map((t) => (onFront.has(t.n) ? t.score : null))];
  }

  function scatterChart(container, trials, axis, label, front) {
    const opts = {
      scales: { x: { time: false, distr: 3 } },
      axes: [{ label: label + ' (log)', values: (u, vals) => vals.map((v) => (v === null ? '' : fmtBig(v))) },
        { label: 'score' }],
      series: [{ label }, pointsSeries('trial', '#16a34a'),
        { label: 'Pareto front', stroke: '#dc2626', width: 1.5, spanGaps: true,
          paths: uPlot.paths.stepped({ align: 1 }),
          points: { show: true, size: 9, stroke: '#dc2626', fill: '#dc2626' } }],
      legend: { live: false },
    };
    if (state.charts.scatter && state.charts.scatter._axis !== axis) {
      state.charts.scatter.destroy();
      delete state.charts.scatter;
      container.replaceChildren();
    }
    const data = scatterData(trials, axis, front);
    const chart = plot('scatter', container, opts, data);
    chart._axis = axis;
    container.dataset.axis = axis;
    container.dataset.paretoPoints = String(data[2].filter((v) => v !== null).length);
  }

  // ------------------------------------------------------------------ genealogy tree (SVG)
  /* Tidy layout, root on the left: depth → x; leaves take consecutive rows in depth-first
   * order (children by number) and a parent sits midway between its first and last child. */
  function layoutTree(trials) {
    const byN = new Map(trials.map((t) => [t.n, t]));
    const children = new Map();
    const roots = [];
    for (const t of trials) {
      if (t.parent !== null && byN.has(t.parent)) {
        if (!children.has(t.parent)) children.set(t.parent, []);
        children.get(t.parent).push(t.n);
      } else roots.push(t.n);
    }
    const pos = new Map();
    let row = 0; let maxDepth = 0;
    for (const root of roots) {
      const stack = [[root, 0, false]];
      while (stack.length) {
        const [n, depth, done] = stack.pop();
        const kids = children.get(n) || [];
        if (done || kids.length === 0) {
          const y = kids.length ? (pos.get(kids[0]).y + pos.get(kids[kids.length - 1]).y) / 2 : row++;
          pos.set(n, { x: depth, y });
          maxDepth = Math.max(maxDepth, depth);
          continue;
        }
        stack.push([n, depth, true]);
        for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i], depth + 1, false]);
      }
    }
    return { pos, rows: row, depth: maxDepth };
  }

  function scoreColour(score, lo, hi) {
    if (score === null) return '#d1d5db';
    const t = hi > lo ? (score - lo) / (hi - lo) : 1;
    // a viridis-like ramp: dark purple → teal → yellow
    const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    const f = t * (stops.length - 1); const i = Math.min(stops.length - 2, Math.floor(f));
    const a = stops[i]; const b = stops[i + 1]; const u = f - i;
    return 'rgb(' + a.map((c, k) => Math.round(c + (b[k] - c) * u)).join(',') + ')';
  }

  function drawTree(box, trials, bestPath, onOpen) {
    const { pos, rows, depth } = layoutTree(trials);
    const DX = 120; const DY = 22; const PAD = 24;
    const width = (depth + 1) * DX + PAD * 2; const height = Math.max(1, rows) * DY + PAD * 2;
    const root = svg('svg', { class: 'tree', width, height, viewBox: `0 0 ${width} ${height}` });
    const X = (p) => PAD + p.x * DX; const Y = (p) => PAD + p.y * DY;
    const scores = trials.map((t) => t.score).filter((s) => s !== null);
    const lo = Math.min(...scores); const hi = Math.max(...scores);
    const best = new Set(bestPath);
    const onBest = (t) => best.has(t.n) && t.parent !== null && best.has(t.parent);
    const edges = svg('g', { class: 'edges' }); const labels = svg('g', { class: 'labels' });
    const nodes = svg('g', { class: 'nodes' });
    for (const t of trials) {
      if (t.parent === null || !pos.has(t.parent)) continue;
      const a = pos.get(t.parent); const b = pos.get(t.n);
      const x1 = X(a); const y1 = Y(a); const x2 = X(b); const y2 = Y(b); const mx = (x1 + x2) / 2;
      const edge = svg('path', { class: 'edge' + (onBest(t) ? ' best' : ''),
        d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,
        'data-parent': t.parent, 'data-child': t.n });
      const title = svg('title'); title.textContent = `${t.parent} → ${t.n}: ${t.morphs}`;
      edge.append(title);
      edges.append(edge);
      const label = svg('text', { x: x2 - 6, y: y2 - 5, 'text-anchor': 'end', 'data-edge-label': t.n });
      label.textContent = [...new Set(t.kinds)].join('+');
      labels.append(label);
    }
    for (const t of trials) {
      const p = pos.get(t.n);
      const node = svg('circle', { class: 'node' + (best.has(t.n) ? ' best' : ''), cx: X(p), cy: Y(p),
        r: 6, fill: scoreColour(t.score, lo, hi), 'data-trial': t.n, 'data-trial-id': t.id,
        'data-parent': t.parent === null ? '' : t.parent });
      const title = svg('title');
      title.textContent = `trial ${t.n} (${t.state}) score ${fmtScore(t.score)}\n${t.morphs}`;
      node.append(title);
      node.addEventListener('click', () => onOpen(t));
      nodes.append(node);
      const num = svg('text', { class: 'num', x: X(p) + 8, y: Y(p) + 3 });
      num.textContent = t.n;
      labels.append(num);
    }
    root.append(edges, nodes, labels);
    box.replaceChildren(root);
  }

  // ------------------------------------------------------------------ search page
  function searchPage(reportData) {
    const layout = {};
    let table = null; let filterText = ''; let filterState = '';
    const chosen = new Set(); // trial ids whose curves are overlaid
    let customised = false; // until a box is ticked: the 5 best trials and those training
    const complete = new Set(); // trial ids whose curves were read after they finished
    let curves = reportData ? reportData.curves : {};
    let current = null; let axis = null; let metric = null;

    function build(data) {
      const s = data.search;
      setCrumbs([el('a', { href: REPORT ? '#' : '/search/' + s.id, text: s.name })]);
      layout.facts = el('div', { class: 'facts' });
      layout.byTrial = el('div'); layout.byTime = el('div');
      layout.tree = el('div', { class: 'tree-box', id: 'tree' });
      layout.curves = el('div'); layout.scatter = el('div', { id: 'scatter' });
      layout.metric = el('select', { id: 'metric' });
      layout.metric.addEventListener('change', () => { metric = layout.metric.value; drawCurves(); });
      layout.axis = el('select', { id: 'axis' });
      for (const [key, label] of Object.entries(data.axes)) layout.axis.append(el('option', { value: key, text: label }));
      axis = Object.keys(data.axes)[0];
      layout.axis.addEventListener('change', () => { axis = layout.axis.value; drawScatter(); });
      const filter = el('input', { type: 'search', placeholder: 'filter: number, morph, state…', size: 30 });
      filter.addEventListener('input', () => { filterText = filter.value.trim().toLowerCase(); table.refresh(); });
      const stateSel = el('select', {}, el('option', { value: '', text: 'every state' }),
        ...['COMPLETED', 'ACTIVE', 'FAILED', 'INFEASIBLE', 'STALE'].map((v) => el('option', { value: v, text: v })));
      stateSel.addEventListener('change', () => { filterState = stateSel.value; table.refresh(); });
      layout.tableBox = el('div', { class: 'scroll' });
      layout.filters = el('div', { class: 'controls' }, filter, stateSel,
        el('span', { class: 'legend', text: 'tick trials to overlay their learning curves' }));
      main.replaceChildren(
        el('h1', {}, s.name + ' ', el('span', { class: 'muted', text: s.id })),
        layout.facts,
        el('div', { class: 'grid' },
          el('div', { class: 'panel', id: 'progress-trials' }, el('h2', { text: 'Score by trial number' }), layout.byTrial),
          el('div', { class: 'panel', id: 'progress-time' }, el('h2', { text: 'Score over time' }), layout.byTime),
          el('div', { class: 'panel wide' }, el('h2', { text: 'Morph genealogy' }),
            el('p', { class: 'legend', text: 'From the seed network (left): each edge is labelled with its morph kinds, each node coloured by score (purple low, yellow high, grey none); the best path is orange. Click a node to open its trial.' }),
            layout.tree),
          el('div', { class: 'panel', id: 'curves-panel' }, el('h2', { text: 'Learning curves' }),
            el('div', { class: 'controls' }, 'measurement', layout.metric), layout.curves),
          el('div', { class: 'panel', id: 'scatter-panel' }, el('h2', { text: 'Score against cost' }),
            el('div', { class: 'controls' }, 'x axis', layout.axis), layout.scatter,
            el('p', { class: 'legend', text: 'Red: the Pareto front, the completed trials that no other beats on both score and cost on this axis (the search\'s latency limit applies).' })),
          el('div', { class: 'panel wide' }, el('h2', { text: 'Trials' }), layout.filters, layout.tableBox)));
    }

    function facts(s) {
      const parts = [['state', badge(s.state)], ['policy', s.policy], ['trials', String(s.trials)],
        ['by state', Object.entries(s.counts).filter(([, n]) => n).map(([k, n]) => n + ' ' + k.toLowerCase()).join(', ') || '–'],
        ['best', s.best_number === null ? '–' : el('a', { href: '#', text: fmtScore(s.best) + ' (trial ' + s.best_number + ')' })],
        ['compute spent', fmtSec(s.spent)], ['last activity', fmtTime(s.last_activity)]];
      if (s.dataset) parts.splice(2, 0, ['dataset', s.dataset]);
      layout.facts.replaceChildren(...parts.map(([k, v]) => el('span', {}, k + ': ', el('b', {}, v))));
      const link = layout.facts.querySelector('a');
      if (link) {
        const best = current.trials.find((t) => t.n === s.best_number);
        link.setAttribute('href', trialHref(best.id));
        if (REPORT) link.addEventListener('click', (e) => { e.preventDefault(); openTrial(best); });
      }
    }

    function openTrial(t) {
      if (REPORT) reportTrial(t, current, curves);
      else window.location.href = '/trial/' + t.id;
    }

    function matches(t) {
      if (filterState && t.state !== filterState) return false;
      if (!filterText) return true;
      return (String(t.n) + ' ' + t.state + ' ' + t.morphs + ' ' + (t.parent === null ? '' : t.parent)).toLowerCase().includes(filterText);
    }

    function drawTable(trials) {
      if (table) { table.setRows(trials); return; }
      const columns = [
        { key: 'curve', label: '', get: (t) => (chosen.has(t.id) ? 0 : 1), cell: (t) => {
          const box = el('input', { type: 'checkbox', title: 'overlay its learning curve', checked: chosen.has(t.id) });
          box.addEventListener('change', () => {
            customised = true;
            if (box.checked) chosen.add(t.id); else chosen.delete(t.id);
            loadCurves();
          });
          return box;
        } },
        { key: 'n', label: '#', num: true, get: (t) => t.n,
          cell: (t) => el('a', { href: trialHref(t.id), text: String(t.n),
            onclick: REPORT ? (e) => { e.preventDefault(); openTrial(t); } : null }) },
        { key: 'state', label: 'state', get: (t) => t.state, cell: (t) => badge(t.state) },
        { key: 'score', label: 'score', num: true, get: (t) => t.score, cell: (t) => fmtScore(t.score) },
        { key: 'parent', label: 'parent', num: true, get: (t) => t.parent, cell: (t) => (t.parent === null ? 'seed' : String(t.parent)) },
        { key: 'morphs', label: 'morphs', cls: 'morphs', get: (t) => t.morphs },
        { key: 'params', label: 'parameters', num: true, get: (t) => t.params, cell: (t) => fmtInt(t.params) },
        { key: 'flops', label: 'FLOPs', num: true, get: (t) => t.flops, cell: (t) => fmtBig(t.flops) },
        { key: 'seconds', label: 'training s', num: true, get: (t) => t.seconds, cell: (t) => (t.seconds === null ? '–' : t.seconds.toFixed(1)) },
      ];
      table = sortableTable(columns, trials, { sort: { key: 'n', dir: -1 }, filter: matches, limit: 200,
        rowAttrs: (t) => ({ 'data-trial-row': t.n }) });
      layout.tableBox.replaceChildren(table.table);
    }

    function drawScatter() {
      // a live search may gain an axis (the first measured latency): offer it without a reload
      const keys = Object.keys(current.axes);
      if (keys.join() !== [...layout.axis.options].map((o) => o.value).join()) {
        layout.axis.replaceChildren(...Object.entries(current.axes).map(([key, text]) => el('option', { value: key, text })));
        if (!keys.includes(axis)) axis = keys[0];
        layout.axis.value = axis;
      }
      scatterChart(layout.scatter, current.trials, axis, current.axes[axis], (current.pareto || {})[axis]);
    }

    function drawCurves() {
      const ids = [...chosen];
      const numbers = Object.fromEntries(current.trials.map((t) => [t.id, t.n]));
      const names = metricsOf(curves);
      if (!metric || !names.includes(metric)) metric = names[0] || 'objective';
      layout.metric.replaceChildren(...names.map((n) => el('option', { value: n, text: n, selected: n === metric })));
      curvesChart('curves', layout.curves, curves, ids, numbers, metric);
    }

    function defaultChoice(trials) {
      const best = trials.filter((t) => t.score !== null).sort((a, b) => b.score - a.score || a.n - b.n);
      const training = trials.filter((t) => t.state === 'ACTIVE').slice(-5);
      chosen.clear();
      for (const t of [...best.slice(0, 5), ...training]) chosen.add(t.id);
    }

    /* Curves are read once a trial has finished; those of a trial still training, each update. */
    async function loadCurves() {
      if (REPORT) { drawCurves(); return; }
      const ids = [...chosen].filter((id) => !complete.has(id));
      if (ids.length) {
        const final = new Set(current.trials.filter((t) => t.finished !== null).map((t) => t.id));
        try {
          const got = await getJSON(`/api/search/${ident}/curves?trials=${ids.join(',')}`);
          for (const id of ids) {
            curves[id] = got.data[id] || {};
            if (final.has(id)) complete.add(id);
          }
        } catch (err) { layout.curves.textContent = 'curves: ' + err.message; return; }
      }
      drawCurves();
    }

    function render(data) {
      const first = current === null;
      current = data;
      if (!customised) defaultChoice(data.trials);
      const t = [performance.now()];
      if (first) build(data);
      facts(data.search);
      progressCharts(layout, data.trials);
      t.push(performance.now());
      drawTree(layout.tree, data.trials, data.best_path, openTrial);
      t.push(performance.now());
      drawScatter();
      drawTable(data.trials);
      t.push(performance.now());
      state.timings = { progress: t[1] - t[0], tree: t[2] - t[1], table: t[3] - t[2] };
      loadCurves();
      markReady(data.trials.length);
      if (REPORT && first && window.location.hash.startsWith('#trial-')) {
        const t = data.trials.find((x) => '#trial-' + x.id === window.location.hash);
        if (t) openTrial(t);
      }
    }

    if (reportData) render(reportData);
    else poll('/api/search/' + ident, render);
  }

  // ------------------------------------------------------------------ architecture (SVG)
  function layerLabel(layer) {
    const k = layer.kind;
    const bits = [k];
    if (layer.units) bits.push(String(layer.units));
    if (layer.kernel && k !== 'dense') bits.push(layer.kernel + (layer.stride > 1 ? '/' + layer.stride : ''));
    if (layer.rate) bits.push('p=' + layer.rate);
    return bits.join(' ');
  }

  /* Layers top to bottom in their stored (topological) order; an input that is not the layer
   * just above is a skip, drawn as an arc on the right, each at its own offset. */
  function drawArchitecture(box, layers, inputShape) {
    const BW = 170; const BH = 22; const GAP = 12; const LEFT = 20;
    const names = ['input', ...layers.map((l) => l.name)];
    const row = new Map(names.map((n, i) => [n, i]));
    const skips = [];
    layers.forEach((l, i) => {
      for (const src of l.inputs || []) if (row.get(src) !== i) skips.push([src, l.name]);
    });
    const width = LEFT + BW + 40 + skips.length * 10 + 20;
    const height = names.length * (BH + GAP) + 20;
    const root = svg('svg', { class: 'arch', width, height, viewBox: `0 0 ${width} ${height}` });
    const top = (i) => 10 + i * (BH + GAP);
    skips.forEach(([src, dst], k) => {
      const a = row.get(src); const b = row.get(dst);
      if (a === undefined) return;
      const x = LEFT + BW; const off = 18 + k * 10;
      root.append(svg('path', { class: 'wire skip', d: `M${x},${top(a) + BH / 2} C${x + off},${top(a) + BH / 2} ${x + off},${top(b) + BH / 2} ${x},${top(b) + BH / 2}`,
        'data-skip': src + '>' + dst }));
    });
    names.forEach((name, i) => {
      if (i > 0) {
        const l = layers[i - 1];
        if ((l.inputs || []).includes(names[i - 1])) {
          root.append(svg('path', { class: 'wire', d: `M${LEFT + BW / 2},${top(i - 1) + BH} L${LEFT + BW / 2},${top(i)}` }));
        }
      }
      const l = i === 0 ? null : layers[i - 1];
      const kind = l ? l.kind : 'input';
      const g = svg('g', { class: 'layer' + (i === 0 || i === names.length - 1 ? ' io' : '') + (kind === 'add' || kind === 'concat' ? ' merge' : ''),
        'data-layer': name });
      g.append(svg('rect', { x: LEFT, y: top(i), width: BW, height: BH }));
      const text = svg('text', { x: LEFT + 8, y: top(i) + 15 });
      text.textContent = l ? `${layerLabel(l)}  ·  ${name}` : 'input ' + inputShape.join('×');
      g.append(text);
      root.append(g);
    });
    box.replaceChildren(root);
  }

  function operationItem(op) {
    const args = Object.entries(op).filter(([k]) => k !== 'op').map(([k, v]) => k + '=' + JSON.stringify(v)).join(', ');
    return el('li', {}, el('b', { text: op.op }), ' ' + args);
  }

  function trialView(data) {
    const t = data.trial; const s = data.search;
    const wrap = el('div');
    const parent = t.parent === null ? 'none (the seed)' : el('a', { href: trialHref(data.parent_id), text: 'trial ' + t.parent });
    const kids = data.children.length ? el('span', {}, ...data.children.flatMap((c, i) => {
      const link = el('a', { href: trialHref(c.id), text: String(c.n) });
      return i ? [', ', link] : [link];
    })) : 'none';
    const facts = el('div', { class: 'facts' },
      ...[['state', badge(t.state)], ['score', fmtScore(t.score)], ['parent', parent], ['children', kids],
        ['parameters', fmtInt(t.params)], ['FLOPs', fmtBig(t.flops)], ['training', fmtSec(t.seconds)]]
        .map(([k, v]) => el('span', {}, k + ': ', el('b', {}, v))));
    const arch = el('div', { id: 'architecture' });
    const curve = el('div', { id: 'trial-curve' });
    const download = data.onnx && !REPORT
      ? el('a', { id: 'onnx', href: '/api/trial/' + t.id + '/onnx', download: '', text: 'download ONNX' })
      : el('span', { class: 'muted', text: REPORT ? 'ONNX: morphnas export ' + s.id + ' --trial ' + t.id + ' -o model.onnx'
        : 'no trained weights to export' });
    wrap.append(...[
      el('h1', {}, `Trial ${t.n} `, el('span', { class: 'muted', text: t.id })), facts,
      t.reason ? el('p', { class: 'muted', text: 'reason: ' + t.reason }) : null,
      el('div', { class: 'grid' },
        el('div', { class: 'panel' }, el('h2', { text: 'Architecture' }), el('div', { class: 'scroll tall' }, arch)),
        el('div', { class: 'panel' },
          el('h2', { text: 'Morph path from its parent' }),
          t.operations.length ? el('ol', { class: 'morphs' }, ...t.operations.map(operationItem)) : el('p', { text: 'the seed network' }),
          el('h2', { text: 'Learning curve' }), curve,
          el('h2', { text: 'Model' }), download))].filter((x) => x !== null));
    return { wrap, arch, curve };
  }

  function fillTrial(parts, data, chartName) {
    drawArchitecture(parts.arch, data.layers, data.input_shape);
    const names = metricsOf(data.curves);
    const numbers = { [data.trial.id]: data.trial.n };
    curvesChart(chartName, parts.curve, data.curves, [data.trial.id], numbers, names[0] || 'objective');
  }

  function trialPage() {
    getJSON('/api/trial/' + ident).then((got) => {
      const data = got.data;
      setCrumbs([el('a', { href: '/search/' + data.search.id, text: data.search.name }),
        el('span', { text: 'trial ' + data.trial.n })]);
      const parts = trialView(data);
      main.replaceChildren(parts.wrap);
      fillTrial(parts, data, 'trialCurve');
      markReady(1);
    }).catch(showError);
  }

  /* In a static report a click opens the trial in a panel above the search. */
  function reportTrial(t, data, curves) {
    const byN = new Map(data.trials.map((x) => [x.n, x]));
    const parent = t.parent === null ? null : byN.get(t.parent);
    const detail = {
      search: data.search, trial: Object.assign({}, t, { operations: REPORT.operations[t.id] || [] }),
      parent_id: parent ? parent.id : null,
      children: data.trials.filter((x) => x.parent === t.n).map((x) => ({ n: x.n, id: x.id })),
      layers: REPORT.layers[t.id] || [], input_shape: data.search.input_shape,
      curves: curves[t.id] ? { [t.id]: curves[t.id] } : {}, onnx: false,
    };
    let panel = document.getElementById('trial-panel');
    if (!panel) {
      panel = el('div', { id: 'trial-panel', class: 'panel trial-panel' });
      main.prepend(panel);
    }
    const parts = trialView(detail);
    const close = el('button', { text: 'close', onclick: () => { panel.remove(); history.replaceState(null, '', '#'); } });
    panel.replaceChildren(close, parts.wrap);
    panel.querySelectorAll('a[href^="#trial-"]').forEach((a) => a.addEventListener('click', (e) => {
      e.preventDefault();
      const id = a.getAttribute('href').slice(7);
      const next = data.trials.find((x) => x.id === id);
      if (next) reportTrial(next, data, curves);
    }));
    fillTrial(parts, detail, 'reportTrialCurve');
    history.replaceState(null, '', '#trial-' + t.id);
    panel.scrollIntoView();
  }

  // ------------------------------------------------------------------ start
  try {
    if (REPORT) searchPage(REPORT.search);
    else if (page === 'searches') searchesPage();
    else if (page === 'search') searchPage(null);
    else if (page === 'trial') trialPage();
  } catch (err) { showError(err); throw err; }
})();
