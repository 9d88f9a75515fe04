// slogate dashboard: reads the JSON API every few seconds and renders it with DOM nodes only.
//
// Every value shown comes from spans or configuration, so nothing is ever parsed as HTML: text
// goes through textContent (createTextNode), attributes through setAttribute. A section is
// rebuilt off-screen and swapped in one step, and only when its data changed, so a refresh does
// not flicker or reset what the reader is looking at. When the API cannot be reached, the last
// data stays on screen, dimmed, under a banner saying since when.
'use strict';

(function () {
  const REFRESH_MS = 5000;
  const FETCH_TIMEOUT_MS = 8000;
  const MAX_SLI_SERVICES = 40;
  const MAX_SERIES_PER_SERVICE = 50;
  // Gate cards: charted (one timeline request each) up to this many; a card whose verdict is
  // older than STALE_MS is marked stale, older than HIDE_MS it leaves the cards (the verdict
  // stays in "Recent verdicts").
  const MAX_CHARTED = 12;
  const STALE_MS = 15 * 60 * 1000;
  const HIDE_MS = 6 * 3600 * 1000;
  const CHART_RANGE = '1h';
  const CHART_STEP = '1m';

  const $ = (id) => document.getElementById(id);
  const state = {
    gates: null,
    lastOk: null,
    failures: 0,
    failingSince: null,
    rendered: new Map(),
    evaluatedFromHash: false,
    sqlFromHash: null,
  };

  // ---- DOM helpers ------------------------------------------------------------------------

  // el('td', {class: 'num', title: 't'}, 'text', childNode, ...): strings become text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) append(node, c);
      else node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  // Swaps a section's content in one step, only when its data changed.
  function renderInto(id, data, build) {
    const key = JSON.stringify(data);
    if (state.rendered.get(id) === key) return;
    state.rendered.set(id, key);
    const target = $(id);
    const fragment = document.createDocumentFragment();
    append(fragment, [build(data)]);
    target.replaceChildren(fragment);
    updateAges(target);
  }

  function table(headers, rows, attrs) {
    const head = el('tr', null, headers.map((h) => (typeof h === 'string' ? el('th', null, h) : h)));
    return el('div', { class: 'table-wrap' }, el('table', attrs || null, el('thead', null, head), el('tbody', null, rows)));
  }

  // A table whose entries are groups of rows (one <tbody> each), e.g. a figure row and the
  // sentence explaining it, so the explanation is never scrolled out of sight on a phone.
  function groupedTable(headers, groups, attrs) {
    const head = el('tr', null, headers.map((h) => el('th', null, h)));
    return el('div', { class: 'table-wrap' }, el('table', attrs || null, el('thead', null, head), groups));
  }

  function whyRow(span, text) {
    return el('tr', { class: 'why' }, el('td', { colspan: span, class: 'reason' }, text));
  }

  function badge(text, kind, title) {
    return el('span', { class: 'badge ' + kind, title: title || null }, text);
  }

  function empty(text) {
    return el('div', { class: 'empty' }, text);
  }

  function errorBox(text) {
    return el('div', { class: 'error', role: 'alert' }, text);
  }

  // ---- formatting (the test suite mirrors these rules) --------------------------------------

  const DASH = '—';

  function fmtInt(n) {
    if (n === null || n === undefined) return DASH;
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }

  function fmtMs(v) {
    if (v === null || v === undefined) return DASH;
    return (v < 10 ? v.toFixed(2) : v.toFixed(1)) + ' ms';
  }

  function fmtPct(v) {
    if (v === null || v === undefined) return DASH;
    return (v * 100).toFixed(2) + '%';
  }

  function fmtRate(v) {
    if (v === null || v === undefined) return DASH;
    return v.toFixed(2) + '/s';
  }

  function fmtNum(v, digits) {
    if (v === null || v === undefined) return DASH;
    return v.toFixed(digits);
  }

  function fmtObjective(v) {
    return String(Number((v * 100).toFixed(4))) + '%';
  }

  function fmtDuration(s) {
    if (s === null || s === undefined) return DASH;
    if (s > 0 && s % 86400 === 0) return s / 86400 + 'd';
    if (s > 0 && s % 3600 === 0) return s / 3600 + 'h';
    if (s > 0 && s % 60 === 0) return s / 60 + 'm';
    return s + 's';
  }

  function pad(n) {
    return String(n).padStart(2, '0');
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    const hms = pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
    if (Date.now() - ms < 20 * 3600 * 1000) return hms;
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + hms;
  }

  function fmtAge(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return s + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ago';
    if (s < 86400) return Math.floor(s / 3600) + 'h ago';
    return Math.floor(s / 86400) + 'd ago';
  }

  // A time that keeps its "… ago" current without re-rendering its section.
  function when(ms) {
    if (!ms && ms !== 0) return el('span', { class: 'muted' }, DASH);
    return el('time', { 'data-ts': ms, datetime: new Date(ms).toISOString() }, fmtTime(ms));
  }

  function updateAges(root) {
    for (const t of root.querySelectorAll('time[data-ts]')) {
      const ms = Number(t.getAttribute('data-ts'));
      const text = fmtTime(ms) + ' (' + fmtAge(ms) + ')';
      if (t.textContent !== text) t.textContent = text;
    }
    // Cards age out between refreshes too: stale after STALE_MS without a new verdict.
    for (const card of root.querySelectorAll('article[data-evaluated]')) {
      const stale = Date.now() - Number(card.getAttribute('data-evaluated')) > STALE_MS;
      card.classList.toggle('stale', stale);
    }
  }

  // ---- Charts (inline SVG built with DOM calls; colours from app.css classes) -------------

  const SVG_NS = 'http://www.w3.org/2000/svg';

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    append(node, children);
    return node;
  }

  // A line chart of series [{label, cls, points: [[ms, value or null], ...]}] on one y axis
  // from 0; a null value breaks the line (no requests in that step is not zero).
  function lineChart(title, series, fmt) {
    const W = 360, H = 130, L = 58, R = 8, T = 8, B = 20;
    const all = series.flatMap((s) => s.points);
    const values = all.map((p) => p[1]).filter((v) => v !== null && v !== undefined && isFinite(v));
    const points = values.length;
    const fig = el('figure', { class: 'chart', 'data-chart': title, 'data-points': points });
    fig.appendChild(el('figcaption', null, title));
    if (!points) {
      fig.appendChild(el('p', { class: 'muted' }, 'no requests in the last ' + CHART_RANGE + ' (or not sealed yet: a slot joins when it closes)'));
      return fig;
    }
    const t0 = Math.min(...all.map((p) => p[0]));
    const t1 = Math.max(...all.map((p) => p[0]));
    const vmax = Math.max(...values) * 1.1 || 1;
    const x = (t) => L + (t1 === t0 ? (W - L - R) / 2 : ((t - t0) / (t1 - t0)) * (W - L - R));
    const y = (v) => T + (1 - v / vmax) * (H - T - B);
    const plot = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': title, class: 'plot' });
    plot.appendChild(svg('line', { x1: L, y1: y(0), x2: W - R, y2: y(0), class: 'axis' }));
    plot.appendChild(svg('line', { x1: L, y1: T, x2: L, y2: y(0), class: 'axis' }));
    plot.appendChild(svg('text', { x: L - 4, y: T + 8, class: 'tick', 'text-anchor': 'end' }, fmt(vmax)));
    plot.appendChild(svg('text', { x: L - 4, y: y(0), class: 'tick', 'text-anchor': 'end' }, fmt(0)));
    plot.appendChild(svg('text', { x: L, y: H - 4, class: 'tick' }, fmtTime(t0)));
    plot.appendChild(svg('text', { x: W - R, y: H - 4, class: 'tick', 'text-anchor': 'end' }, fmtTime(t1)));
    for (const s of series) {
      let d = '';
      let pen = false;
      for (const [t, v] of s.points) {
        if (v === null || v === undefined || !isFinite(v)) {
          pen = false;
          continue;
        }
        d += (pen ? ' L' : ' M') + x(t).toFixed(1) + ' ' + y(v).toFixed(1);
        pen = true;
      }
      if (d) plot.appendChild(svg('path', { d: d.trim(), class: 'line ' + s.cls, 'data-series': s.label }));
      // A single point has no segment: a dot shows it.
      const lone = s.points.filter((p) => p[1] !== null && p[1] !== undefined);
      if (lone.length === 1) plot.appendChild(svg('circle', { cx: x(lone[0][0]), cy: y(lone[0][1]), r: 2.5, class: 'dot ' + s.cls }));
    }
    fig.appendChild(plot);
    fig.appendChild(el('div', { class: 'legend' }, series.map((s) => el('span', { class: 'key ' + s.cls }, s.label))));
    return fig;
  }

  // A criterion's value in its metric's unit.
  function fmtMetric(metric, v) {
    if (v === null || v === undefined) return DASH;
    if (metric === 'error_rate') return fmtPct(v);
    if (metric === 'request_rate') return v.toFixed(2) + ' req/s';
    if (/^latency_.*_ms$/.test(metric)) return v.toFixed(1) + ' ms';
    return fmtNum(v, 3);
  }

  // A criterion's value: an OTLP metric criterion carries its own unit.
  function fmtValue(c, v) {
    if (c.unit === undefined || c.unit === null) return fmtMetric(c.metric, v);
    if (v === null || v === undefined) return DASH;
    return String(Number(v.toPrecision(4))) + (c.unit ? ' ' + c.unit : '');
  }

  // A criterion's bound, in the unit its comparison is made in.
  function fmtBound(c, v) {
    const t = c.threshold;
    switch (t.comparison) {
      case 'absolute':
        return fmtValue(c, v);
      case 'ratio':
        return '×' + v.toFixed(2);
      case 'difference':
        if (c.metric === 'error_rate') return '+' + (v * 100).toFixed(2) + ' pts';
        return '+' + fmtMetric(c.metric, v);
      case 'two_proportion':
        return '+' + (v * 100).toFixed(2) + ' pts';
      default:
        return fmtNum(v, 3);
    }
  }

  function fmtScoreValue(c, v) {
    if (v === null || v === undefined) return DASH;
    switch (c.threshold.comparison) {
      case 'absolute':
        return fmtValue(c, v);
      case 'ratio':
        return '×' + v.toFixed(2);
      case 'difference':
      case 'two_proportion':
        return (v >= 0 ? '+' : '') + (c.metric === 'error_rate' ? (v * 100).toFixed(2) + ' pts' : fmtMetric(c.metric, v));
      default:
        return fmtNum(v, 3);
    }
  }

  function fmtScore(c) {
    return fmtScoreValue(c, c.score);
  }

  // The score with its confidence interval and the level of the fail test, when it has them.
  function scoreCell(c) {
    const parts = [fmtScore(c)];
    const hasInterval = (c.ci_lower !== null && c.ci_lower !== undefined) || (c.ci_upper !== null && c.ci_upper !== undefined);
    if (hasInterval) {
      parts.push(el('div', { class: 'muted interval' }, '[' + fmtScoreValue(c, c.ci_lower) + ', ' + fmtScoreValue(c, c.ci_upper) + ']'));
    }
    if (c.alpha !== null && c.alpha !== undefined) {
      parts.push(el('div', { class: 'muted alpha' }, 'α ' + c.alpha.toExponential(1)));
    }
    return el('td', { class: 'num score', 'data-label': 'compared' }, ...parts);
  }

  // Where a look stands in its analysis (a rollout step polled repeatedly).
  function analysisLine(doc) {
    const a = doc.analysis;
    if (!a) return null;
    return el('div', { class: 'analysis muted', 'data-look': String(a.look), 'data-final': String(a.final) },
      'analysis ', el('span', { class: 'mono' }, a.id), ' · look ', el('strong', null, a.look + ' of ' + a.looks),
      a.final ? ' (final)' : ' (not final: only a fail decides now)',
      ' · false-rollback budget ' + fmtPct(a.alpha) + ', spent ' + fmtPct(a.spent) + ' · data since ' + a.data_since);
  }

  function thresholdCell(c) {
    const t = c.threshold;
    const parts = [];
    if (t.comparison === 'mann_whitney') {
      parts.push('P(canary slower) ≤ ' + fmtNum(t.pass, 2));
    } else if (t.comparison === 'two_proportion') {
      parts.push('excess errors ≤ ' + fmtBound(c, t.pass));
    } else {
      // pass ≤ fail: lower is better; pass > fail: higher is better (request rate).
      const lower = t.pass <= t.fail;
      parts.push(el('span', { class: 'pass-bound' }, 'pass ' + (lower ? '≤ ' : '≥ ') + fmtBound(c, t.pass)));
      parts.push(' · ');
      parts.push(el('span', { class: 'fail-bound' }, 'fail ' + (lower ? '> ' : '< ') + fmtBound(c, t.fail)));
    }
    const meta = [t.comparison];
    if (t.confidence) meta.push(Number((t.confidence * 100).toFixed(2)) + '% confidence');
    if (c.p_value !== undefined && c.p_value !== null) meta.push('p = ' + c.p_value.toPrecision(3));
    return el('td', { class: 'threshold' }, parts, el('div', { class: 'muted' }, meta.join(' · ')));
  }

  const DECISION_KIND = { proceed: 'good', hold: 'warn', rollback: 'bad' };
  const VERDICT_KIND = { pass: 'good', fail: 'bad', inconclusive: 'none' };
  const RESULT_KIND = { pass: 'good', marginal: 'warn', fail: 'bad', no_data: 'none' };
  const RESULT_TEXT = { pass: 'pass', marginal: 'marginal', fail: 'fail', no_data: 'no data' };

  // ---- API ----------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  // With `auth.api` configured the API wants a bearer token. The page takes it once from its
  // address (`/#token=...`), keeps it in sessionStorage (this tab only; never a cookie, so no
  // cross-site request can carry it) and takes it out of the address bar at once.
  const TOKEN_KEY = 'slogate-api-token';

  function takeTokenFromHash() {
    const m = location.hash.match(/^#token=([^&]+)/);
    if (!m) return;
    try {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    } catch (e) {
      // Storage disabled: the page works without auth only.
    }
    history.replaceState(null, '', location.pathname + location.search + '#gates');
  }

  function apiToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (e) {
      return null;
    }
  }

  async function api(path, options) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    let resp;
    const token = apiToken();
    const headers = Object.assign({ Accept: 'application/json' }, (options && options.headers) || {}, token ? { Authorization: 'Bearer ' + token } : {});
    try {
      resp = await fetch(path, Object.assign({ signal: ctl.signal, cache: 'no-store' }, options || {}, { headers }));
    } catch (e) {
      // A network failure or a timeout: the API is unreachable (status 0).
      throw new ApiError('cannot reach ' + path + ': ' + (e && e.name === 'AbortError' ? 'timed out' : String(e && e.message)), 0);
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    const text = await resp.text();
    try {
      body = text ? JSON.parse(text) : null;
    } catch (e) {
      throw new ApiError(path + ': HTTP ' + resp.status + ', not JSON: ' + text.slice(0, 200), resp.status);
    }
    if (!resp.ok) {
      throw new ApiError((body && body.error) || path + ': HTTP ' + resp.status, resp.status);
    }
    return body;
  }

  function postJson(path, value) {
    return api(path, { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(value) });
  }

  // ---- Gates ----------------------------------------------------------------------------------

  function cohortBox(label, c) {
    if (!c) return null;
    const noData = !c.requests;
    return el('div', { class: 'cohort' },
      el('div', null, el('strong', null, label), ' ', el('span', { class: 'sel' }, c.selector || DASH)),
      noData
        ? el('div', { class: 'kv' }, badge('no data', 'none'), el('span', { class: 'muted' }, 'no requests in the window'))
        : el('div', { class: 'kv' },
          el('span', null, 'requests ', el('b', null, fmtInt(c.requests))),
          el('span', null, 'errors ', el('b', null, fmtInt(c.errors)), ' (', fmtPct(c.error_rate), ')'),
          c.sampled_requests ? el('span', { class: 'sampled muted', title: 'requests and errors are adjusted counts of sampled traces; the tests use the sampled spans' }, 'sampled: ' + fmtInt(c.sampled_requests) + ' spans') : null,
          el('span', null, 'p50 ', el('b', null, fmtMs(c.latency_ms.p50))),
          el('span', null, 'p95 ', el('b', null, fmtMs(c.latency_ms.p95))),
          el('span', null, 'p99 ', el('b', null, fmtMs(c.latency_ms.p99)))));
  }

  // Requests for span criteria; data points (and streams) for OTLP metric criteria.
  function samplesCell(c) {
    if (c.points !== undefined && c.points !== null) {
      return el('td', { class: 'num samples', 'data-label': 'samples' }, fmtInt(c.points) + ' points',
        el('div', { class: 'muted' }, (c.series ? fmtInt(c.series) + ' streams, ' : '') + 'vs ' + (c.baseline_points === undefined || c.baseline_points === null ? DASH : fmtInt(c.baseline_points))));
    }
    return el('td', { class: 'num samples', 'data-label': 'samples' }, fmtInt(c.canary_requests), el('div', { class: 'muted' }, 'vs ' + fmtInt(c.baseline_requests)));
  }

  function criteriaTable(doc) {
    const groups = doc.criteria.map((c) => el('tbody', { 'data-criterion': c.name, 'data-result': c.result }, el('tr', null,
      el('td', null, el('strong', null, c.name), el('div', { class: 'muted' }, c.metric)),
      el('td', null, badge(RESULT_TEXT[c.result] || c.result, RESULT_KIND[c.result] || 'none')),
      el('td', { class: 'num observed', 'data-label': 'canary' }, fmtValue(c, c.observed)),
      el('td', { class: 'num baseline', 'data-label': 'baseline' }, fmtValue(c, c.baseline)),
      scoreCell(c),
      thresholdCell(c),
      samplesCell(c)),
      whyRow(7, c.reason)));
    return groupedTable(['criterion', 'result', 'canary', 'baseline', 'compared [interval]', 'threshold', 'samples (canary vs baseline)'], groups, { class: 'criteria' });
  }

  function verdictCard(doc, timeline) {
    const evaluated = Date.parse(doc.evaluated_at);
    const stale = Date.now() - evaluated > STALE_MS;
    return el('article', { class: 'card decision-' + doc.decision + (stale ? ' stale' : ''), 'data-gate': doc.gate, 'data-phase': doc.phase, 'data-decision': doc.decision, 'data-evaluated': evaluated },
      el('div', { class: 'card-head' },
        el('span', { class: 'title' }, doc.gate),
        el('span', { class: 'muted' }, 'phase ', el('strong', null, doc.phase), ' · window ' + fmtDuration(doc.window_seconds)),
        badge(doc.decision, DECISION_KIND[doc.decision] || 'none', 'decision'),
        badge(doc.verdict, VERDICT_KIND[doc.verdict] || 'none', 'verdict'),
        el('span', { class: 'stale-note' }, 'stale'),
        el('span', { class: 'when' }, 'evaluated ', when(evaluated))),
      analysisLine(doc),
      el('div', { class: 'cohorts' }, cohortBox('canary', doc.canary), cohortBox('baseline', doc.baseline)),
      timeline ? gateCharts(timeline) : null,
      criteriaTable(doc));
  }

  // Canary against baseline over the last hour, a point a minute: error rate, and p50, p95 and
  // p99 (canary solid, baseline dashed).
  function gateCharts(t) {
    // The x axis starts one step before the first step with data.
    const first = firstWithData(t);
    const from = first < 0 ? 0 : Math.max(0, first - 1);
    const pts = (steps, f) => (steps || []).slice(from).map((s) => [Date.parse(s.at), s.requests ? f(s) : null]);
    const pair = (f) => {
      const out = [{ label: 'canary', cls: 'canary', points: pts(t.canary.steps, f) }];
      if (t.baseline.steps) out.push({ label: 'baseline', cls: 'baseline', points: pts(t.baseline.steps, f) });
      return out;
    };
    const latency = [];
    for (const q of ['p50', 'p95', 'p99']) {
      latency.push({ label: 'canary ' + q, cls: 'canary ' + q, points: pts(t.canary.steps, (s) => s.latency_ms[q]) });
      if (t.baseline.steps) latency.push({ label: 'baseline ' + q, cls: 'baseline ' + q, points: pts(t.baseline.steps, (s) => s.latency_ms[q]) });
    }
    return el('div', { class: 'charts', 'data-step': t.step_seconds },
      lineChart('error rate', pair((s) => s.error_rate), fmtPct),
      lineChart('latency', latency, fmtMs),
      t.baseline.steps ? null : el('p', { class: 'muted' }, 'baseline ' + t.baseline.selector + ': no live cohort to chart'));
  }

  // The index of the first step in which either cohort had requests, or -1.
  function firstWithData(t) {
    const has = (steps, i) => Boolean(steps && steps[i] && steps[i].requests);
    const n = (t.canary.steps || []).length;
    for (let i = 0; i < n; i++) if (has(t.canary.steps, i) || has(t.baseline.steps, i)) return i;
    return -1;
  }

  // A verdict's timeline over the last hour a minute a step; when its data spans under ten
  // minutes (a rollout that just began), the last ten minutes ten seconds a step instead.
  async function loadTimeline(doc) {
    const hour = await api(timelinePath(doc, CHART_RANGE, CHART_STEP));
    const first = firstWithData(hour);
    if (first >= 0 && hour.canary.steps.length - first <= 10) {
      return api(timelinePath(doc, '10m', '10s'));
    }
    return hour;
  }

  // The timeline request of a verdict's gate, phase and cohorts (the selectors' dimensions,
  // but the service, which the gate fixes).
  function timelinePath(doc, range, step) {
    const q = ['phase=' + encodeURIComponent(doc.phase), 'range=' + range, 'step=' + step];
    const dims = (selector, side) => {
      const stored = /^stored:([^ ]+)/.exec(selector);
      if (stored) {
        q.push(side + '.stored=' + encodeURIComponent(stored[1]));
        return;
      }
      for (const part of selector.split(/,(?=[A-Za-z0-9_.]+=)/)) {
        const i = part.indexOf('=');
        if (i <= 0 || part.slice(0, i) === 'service') continue;
        q.push(encodeURIComponent(side + '.' + part.slice(0, i)) + '=' + encodeURIComponent(part.slice(i + 1)));
      }
    };
    dims(doc.canary.selector, 'canary');
    dims(doc.baseline.selector, 'baseline');
    return '/api/v1/gates/' + encodeURIComponent(doc.gate) + '/timeline?' + q.join('&');
  }

  // The newest verdict per gate, phase and pair of cohorts.
  function latestVerdicts(verdicts) {
    const seen = new Set();
    const out = [];
    for (const v of verdicts) {
      const key = [v.gate, v.phase, v.canary.selector, v.baseline.selector].join('\u0001');
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(v);
    }
    return out;
  }

  // The gates, the newest verdicts of each (asked per gate, so a busy gate cannot push a quiet
  // one's verdict out of the list) and the newest verdicts overall.
  async function loadGates() {
    const gates = (await api('/api/v1/gates')).gates;
    const [perGate, recent] = await Promise.all([
      Promise.all(gates.map((g) => api('/api/v1/verdicts?limit=20&gate=' + encodeURIComponent(g.name)))),
      api('/api/v1/verdicts?limit=50'),
    ]);
    const now = Date.now();
    const all = perGate.flatMap((r) => latestVerdicts(r.verdicts));
    const latest = all.filter((v) => now - Date.parse(v.evaluated_at) <= HIDE_MS);
    // A chart that cannot be drawn (the gate left the configuration) leaves its card without one.
    const timelines = await Promise.all(latest.map((v, i) => (i < MAX_CHARTED ? loadTimeline(v).catch(() => null) : null)));
    return { gates, latest, timelines, hidden: all.length - latest.length, recent: recent.verdicts };
  }

  function renderGates(gates, latest, timelines, hidden, verdicts) {
    renderInto('gates-latest', { gates, latest, timelines, hidden }, () => {
      if (!gates.length) {
        return empty('No gates are configured. Add them under `gates:` in the configuration (see deploy/examples/checkout-canary.yaml).');
      }
      const cards = latest.map((v, i) => verdictCard(v, timelines[i]));
      if (hidden) {
        cards.push(el('p', { class: 'muted aged-out' }, hidden + ' verdict' + (hidden === 1 ? '' : 's') + ' older than ' + fmtDuration(HIDE_MS / 1000) + ' not shown as cards; see Recent verdicts.'));
      }
      const judged = new Set(latest.map((v) => v.gate));
      for (const g of gates) {
        if (judged.has(g.name)) continue;
        cards.push(el('article', { class: 'card', 'data-gate': g.name },
          el('div', { class: 'card-head' }, el('span', { class: 'title' }, g.name), badge('no verdict yet', 'none')),
          el('p', { class: 'muted' }, 'Not evaluated since the server started. Argo Rollouts, CI (`slogate verdict`) or the form below evaluate it.')));
      }
      return el('div', { class: 'cards wide' }, cards);
    });
    renderInto('gates-config', gates, () => {
      if (!gates.length) return empty('No gates configured.');
      const rows = [];
      for (const g of gates) {
        for (const p of g.phases) {
          rows.push(el('tr', null,
            el('td', null, el('strong', null, g.name)),
            el('td', null, p.name),
            el('td', { class: 'wrap-anywhere' }, g.service + (g.operation ? ' · ' + g.operation : '')),
            el('td', { class: 'mono' }, cohortText(g.canary) || el('span', { class: 'muted' }, 'given per request')),
            el('td', { class: 'mono' }, cohortText(g.baseline) || el('span', { class: 'muted' }, 'given per request')),
            el('td', { class: 'num' }, fmtDuration(p.window_seconds)),
            el('td', { class: 'num' }, fmtInt(p.min_requests)),
            el('td', null, p.criteria.map((c) => el('div', null, criterionSpecText(c, p.measures))))));
        }
      }
      return table(['gate', 'phase', 'service', 'canary', 'baseline', 'window', 'min requests', 'criteria'], rows);
    });
    renderInto('gates-history', verdicts, () => {
      if (!verdicts.length) return empty('No verdicts yet.');
      const rows = verdicts.slice(0, 50).map((v) => el('tr', null,
        el('td', null, when(Date.parse(v.evaluated_at))),
        el('td', null, v.gate),
        el('td', null, v.phase),
        el('td', { class: 'mono wrap-anywhere' }, v.canary.selector),
        el('td', { class: 'mono wrap-anywhere' }, v.baseline.selector),
        el('td', null, badge(v.decision, DECISION_KIND[v.decision] || 'none')),
        el('td', null, badge(v.verdict, VERDICT_KIND[v.verdict] || 'none')),
        el('td', { class: 'reason' }, v.reasons.join(' ') || el('span', { class: 'muted' }, 'every criterion passed'))));
      return table(['evaluated', 'gate', 'phase', 'canary', 'baseline', 'decision', 'verdict', 'why'], rows);
    });
  }

  function cohortText(dims) {
    return Object.entries(dims || {}).map(([k, v]) => k + '=' + v).join(', ');
  }

  function criterionSpecText(c, measures) {
    const name = c.name + ': ';
    if (c.kind === 'threshold') {
      const m = c.metric || {};
      const metric = m.type === 'latency' ? 'p' + Number((m.quantile * 100).toFixed(2)) + ' latency'
        : m.type === 'measured' ? ((measures || {})[c.name] || 'OTLP metric') : (m.type || '').replace('_', ' ');
      return name + metric + ' ' + (c.comparison || 'absolute') + ', pass ' + c.pass + ', fail ' + c.fail + (c.sustained_seconds ? ', sustained ' + fmtDuration(c.sustained_seconds) : '');
    }
    const rest = Object.entries(c).filter(([k]) => k !== 'name' && k !== 'kind').map(([k, v]) => k + ' ' + (typeof v === 'object' ? JSON.stringify(v) : v));
    return name + (c.kind || 'test') + (rest.length ? ', ' + rest.join(', ') : '');
  }

  // ---- evaluate form --------------------------------------------------------------------------

  function fillGateSelect(gates) {
    const select = $('ev-gate');
    const names = gates.map((g) => g.name);
    const have = Array.from(select.options).map((o) => o.value);
    if (JSON.stringify(names) !== JSON.stringify(have)) {
      const current = select.value;
      select.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
      if (names.includes(current)) select.value = current;
      fillPhaseSelect();
    }
  }

  function fillPhaseSelect() {
    const gate = (state.gates || []).find((g) => g.name === $('ev-gate').value);
    const select = $('ev-phase');
    const current = select.value;
    const phases = gate ? gate.phases.map((p) => p.name) : [];
    select.replaceChildren(...phases.map((n) => el('option', { value: n }, n)));
    if (phases.includes(current)) select.value = current;
  }

  function parseCohort(text, label) {
    const out = {};
    for (const part of text.split(/[,\s]+/)) {
      if (!part) continue;
      const i = part.indexOf('=');
      if (i <= 0) throw new Error(label + ': write dimension=value pairs, e.g. version=v2 (got ' + JSON.stringify(part) + ')');
      out[part.slice(0, i)] = part.slice(i + 1);
    }
    return out;
  }

  async function evaluate(event) {
    if (event) event.preventDefault();
    const result = $('evaluate-result');
    const button = $('evaluate-form').querySelector('button');
    const gate = $('ev-gate').value;
    let body;
    try {
      if (!gate) throw new Error('no gate selected');
      body = { phase: $('ev-phase').value || undefined, canary: parseCohort($('ev-canary').value, 'canary'), baseline: parseCohort($('ev-baseline').value, 'baseline') };
    } catch (e) {
      result.replaceChildren(errorBox(e.message));
      return;
    }
    button.disabled = true;
    try {
      const doc = await postJson('/api/v1/gates/' + encodeURIComponent(gate) + '/verdict', body);
      const card = verdictCard(doc);
      result.replaceChildren(card);
      updateAges(result);
      refresh();
    } catch (e) {
      result.replaceChildren(errorBox(e.message));
    } finally {
      button.disabled = false;
    }
  }

  // A link like /#evaluate?gate=checkout&phase=canary&canary.version=v2&baseline.version=v1
  // fills the form and evaluates once (for links from CI logs and chat).
  function evaluateFromHash() {
    if (state.evaluatedFromHash || !state.gates) return;
    const h = location.hash;
    if (!h.startsWith('#evaluate?')) return;
    state.evaluatedFromHash = true;
    const q = new URLSearchParams(h.slice('#evaluate?'.length));
    const canary = [];
    const baseline = [];
    for (const [k, v] of q) {
      if (k.startsWith('canary.')) canary.push(k.slice(7) + '=' + v);
      if (k.startsWith('baseline.')) baseline.push(k.slice(9) + '=' + v);
    }
    $('ev-gate').value = q.get('gate') || '';
    fillPhaseSelect();
    if (q.get('phase')) $('ev-phase').value = q.get('phase');
    $('ev-canary').value = canary.join(', ');
    $('ev-baseline').value = baseline.join(', ');
    $('evaluate-panel').open = true;
    evaluate();
  }

  // ---- SLOs -----------------------------------------------------------------------------------

  function sloCard(s) {
    const ratio = s.remaining_ratio;
    const burning = s.burn_rates.some((b) => b.active);
    let budgetBadge;
    if (ratio === null || ratio === undefined) budgetBadge = badge('no data', 'none');
    else if (ratio <= 0) budgetBadge = badge('budget exhausted', 'bad');
    else if (ratio < 0.25) budgetBadge = badge('budget low', 'warn');
    else budgetBadge = badge('within budget', 'good');
    const meterKind = ratio === null || ratio === undefined ? '' : ratio <= 0 ? ' bad' : ratio < 0.25 ? ' warn' : '';
    const width = ratio === null || ratio === undefined ? 0 : Math.max(0, Math.min(1, ratio)) * 100;
    const kind = s.kind && s.kind.type === 'latency' ? 'latency ≤ ' + fmtMs(s.kind.threshold_ms) + ' and no error' : 'availability (not an error)';
    const groups = s.burn_rates.map((b) => {
      let st;
      if (b.active) st = badge('burning', 'bad');
      else if (b.long_burn_rate === null || b.short_burn_rate === null) st = badge('no data', 'none');
      else st = badge('ok', 'good');
      return el('tbody', { 'data-tier': b.tier }, el('tr', null,
        el('td', null, el('strong', null, b.tier)),
        el('td', { class: 'num', 'data-label': 'fires at' }, b.factor + '×'),
        el('td', { class: 'num', 'data-label': 'long' }, fmtBurn(b.long_burn_rate), el('div', { class: 'muted' }, fmtDuration(b.long_window_seconds) + ' · ' + fmtInt(b.long_requests) + ' req')),
        el('td', { class: 'num', 'data-label': 'short' }, fmtBurn(b.short_burn_rate), el('div', { class: 'muted' }, fmtDuration(b.short_window_seconds) + ' · ' + fmtInt(b.short_requests) + ' req')),
        el('td', null, st)),
        whyRow(5, b.reason));
    });
    return el('article', { class: 'card' + (burning ? ' decision-rollback' : ''), 'data-slo': s.name },
      el('div', { class: 'card-head' },
        el('span', { class: 'title' }, s.name),
        el('span', { class: 'muted mono' }, s.selector),
        budgetBadge,
        burning ? badge('burning', 'bad') : null),
      el('div', { class: 'kv' },
        el('span', null, 'objective ', el('b', null, fmtObjective(s.objective)), ' over ', fmtDuration(s.period_seconds)),
        el('span', null, kind),
        el('span', null, 'SLI ', el('b', null, s.sli === null || s.sli === undefined ? DASH : fmtObjective(s.sli))),
        el('span', null, 'good ', el('b', null, fmtInt(s.good)), ' / ', fmtInt(s.total))),
      meter(width, meterKind),
      lineChart('budget remaining', [{ label: 'budget remaining', cls: 'budget', points: (s.budget_history || []).map((p) => [p.at_unix * 1000, p.remaining_ratio]) }], fmtPct),
      el('div', { class: 'kv' },
        el('span', null, 'budget remaining ', el('b', { class: 'budget' }, ratio === null || ratio === undefined ? 'no data' : fmtPct(ratio))),
        s.budget_left ? el('span', null, 'time left at the sustainable burn ', el('b', null, s.budget_left)) : null,
        s.measured_seconds < s.period_seconds ? el('span', { class: 'muted' }, 'measured over the last ' + fmtDuration(s.measured_seconds)) : null),
      groupedTable(['tier', 'fires at', 'long window', 'short window', 'state'], groups, { class: 'burns' }));
  }

  // The bar's width is set through the CSSOM, which the page's CSP (no inline style) allows.
  function meter(percent, kind) {
    const bar = el('span');
    bar.style.width = percent.toFixed(1) + '%';
    return el('div', { class: 'meter' + kind, role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(percent), 'aria-label': 'error budget remaining' }, bar);
  }

  function fmtBurn(v) {
    return v === null || v === undefined ? 'no data' : v.toFixed(2) + '×';
  }

  function renderSlos(slos) {
    const burning = slos.filter((s) => s.burn_rates.some((b) => b.active)).length;
    setCount('count-slos', burning, burning ? 'bad' : '');
    renderInto('slos', slos, () => {
      if (!slos.length) return empty('No SLOs are configured. Add them under `slos:` in the configuration.');
      return el('div', { class: 'cards' }, slos.map(sloCard));
    });
  }

  // ---- Alerts ---------------------------------------------------------------------------------

  const STATE_KIND = { firing: 'bad', pending: 'warn', resolved: 'good', inactive: 'none' };

  function alertRow(a) {
    const st = a.state || {};
    return el('tr', { 'data-alert': a.id, 'data-state': st.state },
      el('td', null, badge(st.state || '?', STATE_KIND[st.state] || 'none')),
      el('td', null, el('strong', null, a.tier), el('div', { class: 'muted' }, a.severity)),
      el('td', null, a.kind),
      el('td', { class: 'wrap-anywhere' }, a.rule, el('div', { class: 'muted' }, a.service)),
      el('td', null, st.since ? when(st.since * 1000) : el('span', { class: 'muted' }, DASH)),
      el('td', { class: 'reason' }, a.summary));
  }

  function renderAlerts(data) {
    const alerts = data.alerts || [];
    const active = alerts.filter((a) => a.state && (a.state.state === 'firing' || a.state.state === 'pending'));
    const firing = active.filter((a) => a.state.state === 'firing').length;
    setCount('count-alerts', active.length, firing ? 'bad' : active.length ? 'warn' : '');
    renderInto('alerts-active', alerts, () => {
      const parts = [];
      if (!active.length) parts.push(empty(alerts.length ? 'No alert is firing or pending (' + alerts.length + ' alert rules quiet).' : 'No alert rules: configure SLOs, `alerting.rules` or gate-failure alerts.'));
      else parts.push(table(['state', 'tier', 'kind', 'rule', 'since', 'summary'], active.map(alertRow), { class: 'alerts' }));
      const quiet = alerts.filter((a) => !active.includes(a));
      if (quiet.length && active.length) parts.push(el('p', { class: 'muted' }, quiet.length + ' more alert rules are quiet or resolved.'));
      return el('div', null, parts);
    });
    renderInto('alerts-delivery', data.delivery || null, (d) => {
      if (!d) return empty('PagerDuty delivery is off (pagerduty.enabled: false): alerts are evaluated and listed here but not sent.');
      const stats = el('div', { class: 'kv' },
        el('span', null, 'delivered ', el('b', null, fmtInt(d.delivered))),
        el('span', null, 'rejected ', el('b', null, fmtInt(d.rejected))),
        el('span', null, 'retries ', el('b', null, fmtInt(d.retries))),
        el('span', null, 'pending ', el('b', null, fmtInt(d.pending))));
      const last = d.last_error ? errorBox('last delivery error: ' + d.last_error) : null;
      const recent = d.recent || [];
      const rows = recent.map((r) => el('tr', { 'data-outcome': r.outcome },
        el('td', null, r.at ? when(r.at * 1000) : DASH),
        el('td', null, r.action),
        el('td', { class: 'mono wrap-anywhere' }, r.dedup_key),
        el('td', null, badge(r.outcome, r.outcome === 'delivered' ? 'good' : r.outcome === 'rejected' ? 'bad' : 'warn')),
        el('td', { class: 'num' }, r.status === null || r.status === undefined ? DASH : String(r.status)),
        el('td', { class: 'num' }, fmtInt(r.attempts)),
        el('td', { class: 'reason' }, r.error || '')));
      return el('div', { class: 'panel' }, stats, last, rows.length ? table(['at', 'action', 'dedup key', 'outcome', 'HTTP', 'attempts', 'error'], rows) : el('p', { class: 'muted' }, 'Nothing sent yet.'));
    });
    renderInto('alerts-transitions', data.transitions || [], (ts) => {
      if (!ts.length) return empty('No alert has changed state since the server started.');
      const rows = ts.map((t) => {
        const n = t.notified || {};
        const notified = 'Err' in n ? badge('not queued', 'bad', n.Err) : badge('queued', 'good');
        return el('tr', null,
          el('td', null, when(t.at_unix * 1000)),
          el('td', null, badge(t.transition, t.transition === 'fired' ? 'bad' : t.transition === 'resolved' ? 'good' : 'none')),
          el('td', { class: 'reason' }, t.summary, el('div', { class: 'muted mono wrap-anywhere' }, t.id)),
          el('td', null, notified, 'Err' in n ? el('div', { class: 'muted' }, n.Err) : null));
      });
      return table(['at', 'transition', 'alert', 'notification'], rows);
    });
  }

  // ---- Traffic --------------------------------------------------------------------------------

  function trafficCells(s) {
    return [
      el('td', { class: 'num requests' }, fmtInt(s.requests)),
      el('td', { class: 'num rate' }, fmtRate(s.rate_per_second)),
      el('td', { class: 'num errors' }, fmtInt(s.errors)),
      el('td', { class: 'num error-rate' }, fmtPct(s.error_rate)),
      el('td', { class: 'num p50' }, fmtMs(s.latency_ms.p50)),
      el('td', { class: 'num p95' }, fmtMs(s.latency_ms.p95)),
      el('td', { class: 'num p99' }, fmtMs(s.latency_ms.p99)),
    ];
  }

  function renderTraffic(series, slis, errors) {
    const filter = $('traffic-filter').value.trim().toLowerCase();
    renderInto('traffic', { series, slis, errors, filter }, () => {
      if (!series.services.length) return empty('No spans received yet. Point an OpenTelemetry exporter at :4317 (gRPC) or :4318 (HTTP).');
      const rows = [];
      const byService = new Map();
      for (const s of series.series) {
        if (!byService.has(s.service)) byService.set(s.service, []);
        byService.get(s.service).push(s);
      }
      for (const name of series.services) {
        const subs = (byService.get(name) || []).filter((s) => !filter || [s.service, s.env, s.version, s.operation].some((v) => v.toLowerCase().includes(filter)));
        if (filter && !subs.length && !name.toLowerCase().includes(filter)) continue;
        const sli = slis[name];
        const head = el('td', { class: 'wrap-anywhere' }, el('strong', null, name));
        if (sli) {
          rows.push(el('tr', { class: 'group', 'data-service': name }, head, el('td', { colspan: 3, class: 'muted' }, 'all series'), trafficCells(sli)));
        } else {
          rows.push(el('tr', { class: 'group', 'data-service': name }, head, el('td', { colspan: 10, class: 'muted' }, errors[name] || 'not shown: more than ' + MAX_SLI_SERVICES + ' services')));
        }
        for (const s of subs.slice(0, MAX_SERIES_PER_SERVICE)) {
          rows.push(el('tr', { class: 'sub' },
            el('td', { class: 'muted' }, '↳'),
            el('td', { class: 'wrap-anywhere' }, s.env || el('span', { class: 'muted' }, DASH)),
            el('td', { class: 'wrap-anywhere' }, s.version || el('span', { class: 'muted' }, DASH)),
            el('td', { class: 'wrap-anywhere mono' }, s.operation || el('span', { class: 'muted' }, DASH)),
            trafficCells(s)));
        }
        if (subs.length > MAX_SERIES_PER_SERVICE) {
          rows.push(el('tr', { class: 'sub' }, el('td', { colspan: 11, class: 'muted' }, (subs.length - MAX_SERIES_PER_SERVICE) + ' more series; narrow them with the filter or use SQL')));
        }
      }
      const note = series.truncated ? el('p', { class: 'muted' }, 'Only the busiest ' + series.series.length + ' series are listed.') : null;
      return el('div', null,
        el('p', { class: 'muted' }, 'Last ' + fmtDuration(series.window_seconds) + ' (live windows; rate over the covered slots).'),
        table(['service', 'env', 'version', 'operation', 'requests', 'rate', 'errors', 'error rate', 'p50', 'p95', 'p99'], rows, { class: 'traffic' }),
        note);
    });
  }

  async function loadTraffic() {
    const window = $('traffic-window').value;
    const series = await api('/api/v1/series?window=' + encodeURIComponent(window));
    const slis = {};
    const errors = {};
    await Promise.all(series.services.slice(0, MAX_SLI_SERVICES).map(async (name) => {
      try {
        slis[name] = await api('/api/v1/sli?service=' + encodeURIComponent(name) + '&window=' + encodeURIComponent(window));
      } catch (e) {
        errors[name] = e.message;
        if (e.status === 0) throw e;
      }
    }));
    return { series, slis, errors };
  }

  // ---- SQL ------------------------------------------------------------------------------------

  function sqlCell(v) {
    if (v === null || v === undefined) return el('td', { class: 'muted' }, 'NULL');
    if (typeof v === 'number') return el('td', { class: 'num' }, String(v));
    if (typeof v === 'object') return el('td', { class: 'mono wrap-anywhere' }, JSON.stringify(v));
    return el('td', { class: 'wrap-anywhere' }, String(v));
  }

  async function runSql(event) {
    if (event) event.preventDefault();
    const out = $('sql-result');
    const button = $('sql-form').querySelector('button');
    const query = $('sql-query').value;
    button.disabled = true;
    const started = performance.now();
    try {
      const r = await postJson('/api/v1/sql', { query });
      const ms = Math.round(performance.now() - started);
      const rows = r.rows.map((row) => el('tr', null, row.map(sqlCell)));
      out.replaceChildren(
        el('p', { class: 'muted' }, fmtInt(r.rows.length) + (r.rows.length === 1 ? ' row' : ' rows') + ' in ' + ms + ' ms' + (r.truncated ? ' (truncated at the server\'s row limit)' : '')),
        r.columns.length ? table(r.columns, rows, { class: 'sql-result' }) : empty('No columns.'));
    } catch (e) {
      out.replaceChildren(errorBox(e.message));
    } finally {
      button.disabled = false;
    }
  }

  // A link like /#sql?q=SELECT%201 fills the query box and runs it once.
  function sqlFromHash() {
    const h = location.hash;
    if (!h.startsWith('#sql?')) return;
    const q = new URLSearchParams(h.slice('#sql?'.length)).get('q');
    if (q === null || q === state.sqlFromHash) return;
    state.sqlFromHash = q;
    $('sql-query').value = q;
    runSql();
  }

  // ---- refresh loop ---------------------------------------------------------------------------

  function setCount(id, n, kind) {
    const c = $(id);
    const text = n ? String(n) : '';
    if (c.textContent !== text) c.textContent = text;
    c.className = 'count' + (kind ? ' ' + kind : '');
  }

  function sectionError(id, e) {
    renderInto(id, { error: e.message }, () => errorBox(e.message));
  }

  let inFlight = false;

  async function refresh() {
    if (inFlight) return;
    inFlight = true;
    try {
      const [gates, slos, alerts, traffic] = await Promise.allSettled([
        loadGates(),
        api('/api/v1/slos'),
        api('/api/v1/alerts'),
        loadTraffic(),
      ]);
      const results = [gates, slos, alerts, traffic];
      const unreachable = results.every((r) => r.status === 'rejected' && r.reason.status === 0);
      if (unreachable) {
        apiDown(results[0].reason);
        return;
      }
      const refused = results.every((r) => r.status === 'rejected' && (r.reason.status === 401 || r.reason.status === 403));
      if (refused) {
        unauthorized();
        return;
      }
      apiUp();
      if (gates.status === 'fulfilled') {
        const { latest, timelines, hidden, recent } = gates.value;
        state.gates = gates.value.gates;
        fillGateSelect(state.gates);
        const held = latest.filter((v) => v.decision !== 'proceed').length;
        setCount('count-gates', held, latest.some((v) => v.decision === 'rollback') ? 'bad' : held ? 'warn' : '');
        renderGates(state.gates, latest, timelines, hidden, recent);
        evaluateFromHash();
      } else {
        sectionError('gates-latest', gates.reason);
      }
      if (slos.status === 'fulfilled') renderSlos(slos.value.slos);
      else sectionError('slos', slos.reason);
      if (alerts.status === 'fulfilled') renderAlerts(alerts.value);
      else sectionError('alerts-active', alerts.reason);
      if (traffic.status === 'fulfilled') renderTraffic(traffic.value.series, traffic.value.slis, traffic.value.errors);
      else sectionError('traffic', traffic.reason);
      document.body.setAttribute('data-state', 'ok');
    } finally {
      inFlight = false;
      updateAges(document);
    }
  }

  function apiUp() {
    state.lastOk = Date.now();
    state.failures = 0;
    state.failingSince = null;
    $('banner').hidden = true;
    document.body.classList.remove('stale');
    const status = $('status');
    status.className = 'status';
    status.textContent = 'updated ' + fmtTime(state.lastOk);
  }

  function unauthorized() {
    const banner = $('banner');
    banner.textContent = 'The slogate API needs a read token. Open this page as ' + location.origin + location.pathname + '#token=<token>: the token is kept in this tab only.';
    banner.hidden = false;
    document.body.setAttribute('data-state', 'unauthorized');
    const status = $('status');
    status.className = 'status stale';
    status.textContent = 'token needed';
  }

  function apiDown(err) {
    state.failures += 1;
    if (!state.failingSince) state.failingSince = Date.now();
    const banner = $('banner');
    const since = fmtTime(state.failingSince);
    const shown = state.lastOk ? 'Showing the data received at ' + fmtTime(state.lastOk) + '.' : 'Nothing has loaded yet.';
    banner.textContent = 'The slogate API at ' + location.host + ' is unreachable since ' + since + ' (' + state.failures + ' failed refresh' + (state.failures > 1 ? 'es' : '') + '; ' + err.message + '). ' + shown + ' Retrying every ' + REFRESH_MS / 1000 + ' s.';
    banner.hidden = false;
    document.body.classList.add('stale');
    document.body.setAttribute('data-state', 'unreachable');
    const status = $('status');
    status.className = 'status stale';
    status.textContent = 'API unreachable';
  }

  // ---- views ----------------------------------------------------------------------------------

  const VIEWS = ['gates', 'slos', 'alerts', 'traffic', 'sql'];

  function showView() {
    let view = location.hash.replace(/^#/, '').split('?')[0];
    if (view === 'evaluate') view = 'gates';
    if (!VIEWS.includes(view)) view = 'gates';
    for (const v of VIEWS) $('view-' + v).hidden = v !== view;
    for (const a of $('tabs').querySelectorAll('a')) {
      if (a.getAttribute('data-view') === view) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (state.gates) evaluateFromHash();
    sqlFromHash();
  }

  function start() {
    window.addEventListener('error', (e) => {
      document.body.setAttribute('data-js-error', String(e.message));
      const banner = $('banner');
      banner.textContent = 'Dashboard script error: ' + e.message;
      banner.hidden = false;
    });
    window.addEventListener('hashchange', showView);
    $('evaluate-form').addEventListener('submit', evaluate);
    $('ev-gate').addEventListener('change', fillPhaseSelect);
    $('sql-form').addEventListener('submit', runSql);
    $('sql-query').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) runSql(e);
    });
    $('traffic-window').addEventListener('change', refresh);
    $('traffic-filter').addEventListener('input', refresh);
    takeTokenFromHash();
    showView();
    refresh();
    setInterval(refresh, REFRESH_MS);
    setInterval(() => updateAges(document), 1000);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
