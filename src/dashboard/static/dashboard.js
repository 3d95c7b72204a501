// The dashboard page: reads the pilot's /api/v1 (same origin; the token rides in the page's
// cookie) every few seconds and draws the graph, the error boards by origin, the operations,
// the alerts, and answers path → peers searches. Text goes in with textContent only.
/* global window, document, fetch, setTimeout, clearTimeout, URLSearchParams */
'use strict';

(function () {
  const REFRESH_MS = 3000;
  const body = document.body;
  const state = {
    window: '5m',
    sort: 'requests',
    service: '',
    selectedEdge: '',
    graph: null,
    errors: 0,
    timer: undefined,
  };

  const $ = (id) => document.getElementById(id);

  function text(tag, value, attrs) {
    const e = document.createElement(tag);
    e.textContent = value === undefined || value === null ? '' : String(value);
    if (attrs) for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    return e;
  }

  function row(cells) {
    const tr = document.createElement('tr');
    for (const c of cells) tr.appendChild(c instanceof window.Node ? c : text('td', c));
    return tr;
  }

  function num(v, attrs) {
    return text('td', v, Object.assign({ class: 'num', 'data-value': v }, attrs || {}));
  }

  function fixed(v, digits) {
    return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '-';
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }

  function dateTime(ms) {
    const d = new Date(ms);
    return `${d.toLocaleDateString()} ${d.toLocaleTimeString([], { hour12: false })}`;
  }

  function replaceRows(tbody, rows) {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    for (const r of rows) tbody.appendChild(r);
  }

  /** GETs an API path; resolves to {ok, status, body}: a failure is shown, never thrown. */
  async function api(path, params) {
    const qs = new URLSearchParams(params || {}).toString();
    try {
      const res = await fetch(`/api/v1/${path}${qs ? `?${qs}` : ''}`, { credentials: 'same-origin', headers: { accept: 'application/json' } });
      let data = null;
      try {
        data = await res.json();
      } catch {
        data = { error: `answered ${res.status} without JSON` };
      }
      return { ok: res.ok, status: res.status, body: data };
    } catch (err) {
      return { ok: false, status: 0, body: { error: `the pilot did not answer (${err && err.message ? err.message : err})` } };
    }
  }

  // ---- graph -------------------------------------------------------------------------------

  const EDGE_FIELDS = [
    ['rps', 'requests/s', (e) => e.rps, (v) => fixed(v, 3)],
    ['p50Ms', 'p50 ms', (e) => e.p50Ms, (v) => fixed(v, 1)],
    ['p99Ms', 'p99 ms', (e) => e.p99Ms, (v) => fixed(v, 1)],
    ['total', 'requests', (e) => e.counts.total, String],
    ['2xx', '2xx', (e) => e.counts['2xx'], String],
    ['3xx', '3xx', (e) => e.counts['3xx'], String],
    ['4xx', '4xx', (e) => e.counts['4xx'], String],
    ['5xx', '5xx', (e) => e.counts['5xx'], String],
    ['app-4xx', '4xx by the app', (e) => e.counts.byOrigin.app['4xx'], String],
    ['proxy-4xx', '4xx by a proxy', (e) => e.counts.byOrigin.proxy['4xx'], String],
    ['client-4xx', '4xx, client gone', (e) => e.counts.byOrigin.client['4xx'], String],
    ['app-5xx', '5xx by the app', (e) => e.counts.byOrigin.app['5xx'], String],
    ['proxy-5xx', '5xx by a proxy', (e) => e.counts.byOrigin.proxy['5xx'], String],
    ['client-5xx', '5xx, client gone', (e) => e.counts.byOrigin.client['5xx'], String],
  ];

  function showEdge(edge) {
    state.selectedEdge = edge ? `${edge.source}→${edge.target}` : '';
    const panel = $('edge-details');
    if (!edge) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    panel.setAttribute('data-edge', state.selectedEdge);
    $('edge-title').textContent = `${edge.source} → ${edge.target}`;
    const dl = $('edge-fields');
    while (dl.firstChild) dl.removeChild(dl.firstChild);
    for (const [key, label, get, format] of EDGE_FIELDS) {
      const v = get(edge);
      dl.appendChild(text('dt', label));
      dl.appendChild(text('dd', format(v), { 'data-field': key, 'data-value': v }));
    }
    for (const g of document.querySelectorAll('#graph .edge')) g.classList.toggle('selected', g.getAttribute('data-edge') === state.selectedEdge);
  }

  function drawGraph(graph) {
    state.graph = graph;
    const svg = $('graph');
    window.SextantGraph.render(svg, graph, state.selectedEdge, showEdge, (node) => {
      if (node.kind === 'service') {
        state.service = state.service === node.name ? '' : node.name;
        refreshOperations();
      }
    });
    const selected = graph.edges.find((e) => `${e.source}→${e.target}` === state.selectedEdge);
    showEdge(selected);
    $('graph-wrap').classList.toggle('empty', graph.nodes.length === 0);
    $('graph-wrap').setAttribute('data-empty-text', graph.nodes.length === 0 ? 'no requests in this window' : '');
  }

  // ---- boards ------------------------------------------------------------------------------

  function emptyCounts() {
    return { total: 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0, byOrigin: { app: { '4xx': 0, '5xx': 0 }, proxy: { '4xx': 0, '5xx': 0 }, client: { '4xx': 0, '5xx': 0 } } };
  }

  function addCounts(into, c) {
    into.total += c.total;
    for (const k of ['2xx', '3xx', '4xx', '5xx']) into[k] += c[k];
    for (const o of ['app', 'proxy', 'client']) for (const k of ['4xx', '5xx']) into.byOrigin[o][k] += c.byOrigin[o][k];
  }

  /** Per service: the sum of the edges from callers into it (each request once). */
  function boardOf(graph) {
    const kinds = new Map(graph.nodes.map((n) => [n.id, n]));
    const services = new Map();
    for (const e of graph.edges) {
      const target = kinds.get(e.target);
      if (!target || target.kind !== 'service') continue;
      if (!services.has(target.name)) services.set(target.name, emptyCounts());
      addCounts(services.get(target.name), e.counts);
    }
    const total = emptyCounts();
    for (const c of services.values()) addCounts(total, c);
    return { services: [...services.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)), total };
  }

  function boardCells(c) {
    const cells = [num(c.total, { 'data-class': 'total' })];
    for (const k of ['4xx', '5xx']) {
      for (const o of ['app', 'proxy', 'client']) {
        const v = c.byOrigin[o][k];
        cells.push(num(v, { 'data-origin': o, 'data-class': k, class: `num${v > 0 ? ` err ${o}` : ''}` }));
      }
    }
    return cells;
  }

  function drawBoard(graph) {
    const board = boardOf(graph);
    state.errors = board.total['4xx'] + board.total['5xx'];
    replaceRows($('board').querySelector('tbody'), board.services.map(([name, c]) => {
      const tr = row([text('td', name.replace(/\.svc\.cluster\.local$/, ''), { title: name }), ...boardCells(c)]);
      tr.setAttribute('data-service', name);
      return tr;
    }));
    const foot = row([text('th', 'all services'), ...boardCells(board.total)]);
    foot.setAttribute('data-board-total', '');
    replaceRows($('board').querySelector('tfoot'), [foot]);
  }

  /** The latest errors of the last five minutes at most, read only when the board counts some. */
  async function refreshRecentErrors() {
    const tbody = $('recent-errors').querySelector('tbody');
    if (state.errors === 0) {
      replaceRows(tbody, [row([text('td', 'no errors in this window', { colspan: 8 })])]);
      return;
    }
    const since = ['1m', '5m'].includes(state.window) ? state.window : '5m';
    const [four, five] = await Promise.all([
      api('access/logs', { since, codeClass: '4xx', limit: '10' }),
      api('access/logs', { since, codeClass: '5xx', limit: '10' }),
    ]);
    if (!four.ok || !five.ok) {
      replaceRows(tbody, [row([text('td', (four.ok ? five : four).body.error, { colspan: 8 })])]);
      return;
    }
    const entries = [...four.body.entries, ...five.body.entries].sort((a, b) => b.time - a.time).slice(0, 12);
    replaceRows(tbody, entries.map((e) => {
      const tr = row([
        clock(e.time), e.reporter, e.sourceWorkload || e.sourceIp, (e.destinationService || 'unknown').replace(/\.svc\.cluster\.local$/, ''),
        `${e.method} ${e.path}`, num(e.responseCode), e.responseFlags || '-', text('td', e.origin, { class: `origin ${e.origin}` }),
      ]);
      tr.setAttribute('data-origin', e.origin);
      return tr;
    }));
  }

  // ---- operations --------------------------------------------------------------------------

  async function refreshOperations() {
    const params = { window: state.window, sort: state.sort, limit: '50' };
    if (state.service) params.service = state.service;
    $('operations-filter').textContent = state.service ? `of ${state.service} (click the service again for all)` : '';
    const r = await api('operations', params);
    const tbody = $('operations').querySelector('tbody');
    if (!r.ok) {
      replaceRows(tbody, [row([text('td', r.body.error, { colspan: 9 })])]);
      return;
    }
    replaceRows(tbody, r.body.operations.map((o) => {
      const name = text('td', '');
      name.appendChild(text('span', o.service.replace(/\.svc\.cluster\.local$/, ''), { class: 'service' }));
      name.appendChild(text('span', ` ${o.operation}`, { class: 'operation' }));
      const tr = row([
        name, num(o.counts.total), text('td', fixed(o.rps, 2), { class: 'num' }),
        num(o.counts.byOrigin.app['4xx']), num(o.counts.byOrigin.proxy['4xx']), num(o.counts.byOrigin.app['5xx']), num(o.counts.byOrigin.proxy['5xx']),
        text('td', fixed(o.p50Ms, 1), { class: 'num' }), text('td', fixed(o.p99Ms, 1), { class: 'num' }),
      ]);
      tr.setAttribute('data-operation', o.operation);
      tr.setAttribute('data-service', o.service);
      return tr;
    }));
  }

  // ---- alerts ------------------------------------------------------------------------------

  async function refreshAlerts() {
    const list = $('alerts');
    const note = $('alerts-note');
    if (body.getAttribute('data-prometheus') !== 'true') {
      note.textContent = 'No Prometheus: start the pilot with --prometheus URL to list the mesh\'s alerts here (rules: sextant alerts rules).';
      replaceRows(list, []);
      return;
    }
    const r = await api('alerts');
    if (!r.ok) {
      note.textContent = r.body.error;
      replaceRows(list, []);
      return;
    }
    const firing = r.body.alerts.filter((a) => a.state === 'firing');
    const pending = r.body.alerts.length - firing.length;
    note.textContent = `${firing.length} firing${pending > 0 ? `, ${pending} pending` : ''} (from ${r.body.prometheus})`;
    replaceRows(list, r.body.alerts.map((a) => {
      const li = document.createElement('li');
      li.className = `alert ${a.state} ${a.labels.origin || ''}`;
      li.setAttribute('data-alert', a.name);
      li.setAttribute('data-state', a.state);
      const head = text('div', '', { class: 'alert-head' });
      head.appendChild(text('strong', a.name));
      head.appendChild(text('span', ` ${a.state}${a.labels.origin ? `, ${a.labels.origin}` : ''}${a.labels.severity ? `, ${a.labels.severity}` : ''} since ${a.activeAt ? clock(Date.parse(a.activeAt)) : '?'}`));
      li.appendChild(head);
      li.appendChild(text('div', a.annotations.description || a.annotations.summary || '', { class: 'alert-text' }));
      const labels = Object.entries(a.labels).filter(([k]) => !['alertname', 'origin', 'severity'].includes(k)).map(([k, v]) => `${k}=${v}`).join(' ');
      li.appendChild(text('div', labels, { class: 'alert-labels' }));
      return li;
    }));
  }

  // ---- lazy scope --------------------------------------------------------------------------

  async function refreshDependencies() {
    const r = await api('dependencies');
    const tbody = $('dependencies').querySelector('tbody');
    const note = $('dependencies-note');
    if (!r.ok) {
      note.textContent = r.body.error;
      replaceRows(tbody, []);
      return;
    }
    const workloads = r.body.workloads || [];
    const edges = workloads.reduce((n, w) => n + w.edges.length, 0);
    note.textContent = workloads.length === 0
      ? 'No lazy workload (no LazyScope selects one).'
      : `${workloads.length} lazy workload${workloads.length === 1 ? '' : 's'}, ${edges} learned dependenc${edges === 1 ? 'y' : 'ies'}`;
    const rows = [];
    for (const w of workloads) {
      const sidecar = w.userSidecar ? `${w.userSidecar} (the user's)` : (w.sidecar || '-');
      if (w.edges.length === 0) rows.push(row([w.workload, sidecar, '-', '', '', '', '', '']));
      for (const e of w.edges) {
        const tr = row([w.workload, sidecar, e.host, e.source, e.lastSource || e.source, e.state, dateTime(Date.parse(e.firstSeen)), dateTime(Date.parse(e.lastSeen))]);
        tr.setAttribute('data-workload', w.workload);
        tr.setAttribute('data-host', e.host);
        tr.className = e.state === 'EXPIRING' ? 'expiring' : '';
        rows.push(tr);
      }
    }
    replaceRows(tbody, rows);
  }

  // ---- peers -------------------------------------------------------------------------------

  async function searchPeers(ev) {
    ev.preventDefault();
    const by = $('peers-by').value;
    const value = $('peers-value').value.trim();
    const status = $('peers-status');
    if (!value) return;
    status.textContent = 'searching…';
    const r = await api('access/peers', { [by]: value, since: $('peers-since').value });
    const tbody = $('peers').querySelector('tbody');
    if (!r.ok) {
      status.textContent = r.body.error;
      replaceRows(tbody, []);
      return;
    }
    status.textContent = `${r.body.peers.length} caller/destination pair${r.body.peers.length === 1 ? '' : 's'}`;
    replaceRows(tbody, r.body.peers.map((p) => {
      const tr = row([p.sourceIp, p.sourceWorkload || '-', p.destinationIp || '-', p.destinationWorkload || '-', (p.destinationService || 'unknown').replace(/\.svc\.cluster\.local$/, ''), num(p.count), dateTime(p.firstSeen), dateTime(p.lastSeen)]);
      tr.setAttribute('data-source-ip', p.sourceIp);
      return tr;
    }));
  }

  // ---- refresh loop ------------------------------------------------------------------------

  async function refreshGraph() {
    const r = await api('graph', { window: state.window });
    if (!r.ok) return r.body.error;
    drawGraph(r.body);
    drawBoard(r.body);
    await refreshRecentErrors();
    return undefined;
  }

  async function refresh() {
    clearTimeout(state.timer);
    const results = await Promise.all([refreshGraph(), refreshOperations(), refreshAlerts(), refreshDependencies()]);
    const problem = results.find((x) => typeof x === 'string');
    const status = $('status');
    status.textContent = problem ? `not updated: ${problem}` : `updated ${clock(Date.now())}`;
    status.classList.toggle('problem', Boolean(problem));
    body.setAttribute('data-loaded', 'true');
    if ($('live').checked) state.timer = setTimeout(refresh, REFRESH_MS);
  }

  $('insecure').hidden = body.getAttribute('data-insecure') !== 'true';
  $('window').addEventListener('change', (ev) => {
    state.window = ev.target.value;
    refresh();
  });
  $('live').addEventListener('change', (ev) => {
    if (ev.target.checked) refresh();
    else clearTimeout(state.timer);
  });
  for (const th of document.querySelectorAll('#operations th[data-sort]')) {
    th.addEventListener('click', () => {
      state.sort = th.getAttribute('data-sort');
      refreshOperations();
    });
  }
  $('peers-form').addEventListener('submit', searchPeers);
  refresh();
})();
