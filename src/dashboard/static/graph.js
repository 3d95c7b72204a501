// The call graph as SVG: a layered layout (callers left, the services they call, then the
// workloads serving them, and so on), ordered within each layer to cross few edges. Plain JS,
// no library: the page loads it as is.
/* global window, document */
'use strict';

(function () {
  const SVG = 'http://www.w3.org/2000/svg';
  const LAYER_GAP = 210;
  const ROW_GAP = 74;
  const MARGIN = 60;
  const RADIUS = 16;

  /**
   * Layers by longest path from a node nobody calls (bounded, so a cycle cannot loop), then a
   * few barycenter sweeps: each node moves towards the mean position of its neighbours.
   */
  function layout(nodes, edges) {
    const ids = nodes.map((n) => n.id).sort();
    const layer = new Map(ids.map((id) => [id, 0]));
    const limit = ids.length;
    for (let round = 0; round < limit; round++) {
      let changed = false;
      for (const e of edges) {
        const next = layer.get(e.source) + 1;
        if (next < limit && layer.has(e.target) && layer.get(e.target) < next) {
          layer.set(e.target, next);
          changed = true;
        }
      }
      if (!changed) break;
    }
    const kindOrder = { unknown: 0, workload: 1, service: 2 };
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const columns = [];
    for (const id of ids) {
      const l = layer.get(id);
      while (columns.length <= l) columns.push([]);
      columns[l].push(id);
    }
    for (const col of columns) col.sort((a, b) => kindOrder[byId.get(a).kind] - kindOrder[byId.get(b).kind] || (a < b ? -1 : 1));
    const neighbours = new Map(ids.map((id) => [id, []]));
    for (const e of edges) {
      if (neighbours.has(e.source) && neighbours.has(e.target)) {
        neighbours.get(e.source).push(e.target);
        neighbours.get(e.target).push(e.source);
      }
    }
    const rank = new Map();
    const setRanks = () => columns.forEach((col) => col.forEach((id, i) => rank.set(id, i)));
    setRanks();
    for (let sweep = 0; sweep < 6; sweep++) {
      const order = sweep % 2 === 0 ? columns.keys() : [...columns.keys()].reverse();
      for (const c of order) {
        const col = columns[c];
        const weight = new Map(col.map((id) => {
          const ns = neighbours.get(id).filter((n) => layer.get(n) !== c);
          return [id, ns.length === 0 ? rank.get(id) : ns.reduce((s, n) => s + rank.get(n), 0) / ns.length];
        }));
        col.sort((a, b) => weight.get(a) - weight.get(b) || (a < b ? -1 : 1));
        col.forEach((id, i) => rank.set(id, i));
      }
    }
    const tallest = Math.max(1, ...columns.map((c) => c.length));
    const height = MARGIN * 2 + (tallest - 1) * ROW_GAP;
    const positions = new Map();
    columns.forEach((col, c) => {
      const offset = (height - (col.length - 1) * ROW_GAP) / 2;
      col.forEach((id, i) => positions.set(id, { x: MARGIN + c * LAYER_GAP, y: offset + i * ROW_GAP }));
    });
    return { positions, width: MARGIN * 2 + Math.max(0, columns.length - 1) * LAYER_GAP + 120, height };
  }

  function el(name, attrs, parent) {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (parent) parent.appendChild(e);
    return e;
  }

  /**
   * Health of an edge from application errors only, with Kiali's default thresholds (4xx:
   * degraded 10 %, failing 20 %; 5xx: degraded 0.1 %, failing 10 %); proxy errors get a badge.
   */
  function health(counts) {
    if (counts.total === 0) return 'idle';
    const app4 = counts.byOrigin.app['4xx'] / counts.total;
    const app5 = counts.byOrigin.app['5xx'] / counts.total;
    if (app5 >= 0.1 || app4 >= 0.2) return 'failing';
    if (app5 >= 0.001 || app4 >= 0.1) return 'degraded';
    return 'healthy';
  }

  function proxyErrors(counts) {
    return counts.byOrigin.proxy['4xx'] + counts.byOrigin.proxy['5xx'];
  }

  /** Draws the graph into `svg`; `onEdge(edge)` and `onNode(node)` are called on clicks. */
  function render(svg, graph, selected, onEdge, onNode) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const { positions, width, height } = layout(graph.nodes, graph.edges);
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    // scaled down to the panel's width when wider, never up
    svg.style.maxWidth = `${width}px`;
    svg.style.maxHeight = `${height}px`;
    const defs = el('defs', {}, svg);
    for (const h of ['healthy', 'degraded', 'failing', 'idle']) {
      const marker = el('marker', { id: `arrow-${h}`, viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' }, defs);
      el('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: `arrow ${h}` }, marker);
    }
    const edgeLayer = el('g', { class: 'edges' }, svg);
    const maxRps = Math.max(0.001, ...graph.edges.map((e) => e.rps));
    for (const e of graph.edges) {
      const a = positions.get(e.source);
      const b = positions.get(e.target);
      if (!a || !b) continue;
      const key = `${e.source}→${e.target}`;
      const h = health(e.counts);
      const g = el('g', { class: `edge ${h}${selected === key ? ' selected' : ''}`, 'data-edge': key, 'data-source': e.source, 'data-target': e.target, tabindex: 0, role: 'button' }, edgeLayer);
      const x1 = a.x + RADIUS;
      const x2 = b.x - RADIUS - 2;
      const mx = (x1 + x2) / 2;
      const d = `M ${x1} ${a.y} C ${mx} ${a.y} ${mx} ${b.y} ${x2} ${b.y}`;
      el('path', { d, class: 'hit' }, g);
      const widthPx = 1.5 + 4 * Math.log1p(e.rps) / Math.log1p(maxRps);
      el('path', { d, class: 'line', 'stroke-width': widthPx.toFixed(2), 'marker-end': `url(#arrow-${h})` }, g);
      const midY = (a.y + b.y) / 2;
      const label = el('text', { x: mx, y: midY - 6, class: 'edge-label', 'text-anchor': 'middle' }, g);
      label.textContent = `${formatRps(e.rps)}/s`;
      const proxy = proxyErrors(e.counts);
      if (proxy > 0) {
        el('circle', { cx: mx, cy: midY + 10, r: 8, class: 'proxy-badge' }, g);
        const t = el('text', { x: mx, y: midY + 14, class: 'proxy-badge-text', 'text-anchor': 'middle' }, g);
        t.textContent = String(proxy);
      }
      const title = el('title', {}, g);
      title.textContent = `${e.source} → ${e.target}: ${e.counts.total} requests`;
      g.addEventListener('click', () => onEdge(e));
      g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') onEdge(e); });
    }
    const nodeLayer = el('g', { class: 'nodes' }, svg);
    for (const n of graph.nodes) {
      const p = positions.get(n.id);
      if (!p) continue;
      const attrs = { class: `node ${n.kind}`, 'data-node': n.id, transform: `translate(${p.x} ${p.y})` };
      if (n.kind === 'workload') attrs['data-workload'] = `${n.namespace}/${n.name}`;
      if (n.kind === 'service') attrs['data-service'] = n.name;
      if (n.kind === 'unknown') attrs['data-unknown'] = n.name;
      const g = el('g', attrs, nodeLayer);
      if (n.kind === 'service') el('rect', { x: -RADIUS, y: -RADIUS, width: RADIUS * 2, height: RADIUS * 2, rx: 5, class: 'shape' }, g);
      else el('circle', { r: RADIUS, class: 'shape' }, g);
      const label = el('text', { y: RADIUS + 14, 'text-anchor': 'middle', class: 'node-label' }, g);
      label.textContent = shortName(n);
      const title = el('title', {}, g);
      title.textContent = n.kind === 'workload' ? `workload ${n.name}.${n.namespace}` : n.kind === 'service' ? `service ${n.name}` : `caller outside the mesh ${n.name}`;
      g.addEventListener('click', () => onNode(n));
    }
  }

  function shortName(n) {
    if (n.kind === 'service') return n.name.replace(/\.svc\.cluster\.local$/, '');
    return n.name;
  }

  function formatRps(v) {
    return v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2);
  }

  window.SextantGraph = { layout, render, health };
})();
