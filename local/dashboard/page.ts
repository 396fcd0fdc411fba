/**
 * The offline dashboard's one page, served by dashboard.ts with its stylesheet and script as files of
 * their own (`/dashboard.css`, `/dashboard.js`), so that the page's Content-Security-Policy allows
 * scripts and styles from its own server only, nothing inline: a string from the data that found its way
 * into the markup could not run. Charts are drawn as SVG by the page itself, with no request to anywhere
 * but its own server (the machine may have no internet). It polls `/api/status` and `/api/history?since=`
 * every sampling interval. Everything it shows from the data goes in through `textContent` (object keys and
 * error messages come from outside); colours are set through the CSSOM, which the policy allows.
 *
 * Elements carry `data-testid`s for the browser test (test/integration/dashboard.test.ts).
 */

/** The page's stylesheet, served as `/dashboard.css`. */
export const DASHBOARD_STYLE = `
:root { --ok: #1a7f37; --alarm: #cf222e; --warn: #9a6700; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; background: var(--bg); }
header { background: #24292f; color: #fff; padding: 12px 20px; display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
header .updated { color: #c9d1d9; font-size: 12px; }
header dl { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 0; font-size: 12px; }
header dt { color: #8b949e; display: inline; }
header dd { display: inline; margin: 0 0 0 4px; font-family: ui-monospace, monospace; }
main { padding: 16px 20px; display: grid; gap: 16px; }
.banner { background: #ffebe9; border: 1px solid var(--alarm); color: var(--alarm); padding: 10px 14px; border-radius: 6px; font-weight: 600; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.tile { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
.tile .label { color: var(--muted); font-size: 12px; }
.tile .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.tile.bad { border-color: var(--alarm); }
.tile.bad .value { color: var(--alarm); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg.chart { width: 100%; height: 220px; display: block; }
svg.chart .axis { stroke: #8c959f; stroke-width: 1; }
svg.chart .grid { stroke: #eaeef2; stroke-width: 1; }
svg.chart text { fill: var(--muted); font-size: 11px; }
svg.chart path.series { fill: none; stroke-width: 2; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 12px; }
.legend .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; overflow-x: auto; }
section h2 { font-size: 15px; margin: 0 0 8px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.key { font-family: ui-monospace, monospace; overflow-wrap: anywhere; min-width: 14em; }
td.error { color: var(--alarm); }
.status { font-weight: 600; padding: 1px 6px; border-radius: 10px; font-size: 12px; }
.status-SUCCESS { background: #dafbe1; color: var(--ok); }
.status-FAILED { background: #ffebe9; color: var(--alarm); }
.status-PROCESSING, .status-DISCOVERED { background: #fff8c5; color: var(--warn); }
.status-SKIPPED { background: #eaeef2; color: var(--muted); }
ul.alarms { list-style: none; margin: 0; padding: 0; display: grid; gap: 4px; }
ul.alarms li { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; padding: 4px 0; border-bottom: 1px solid #eaeef2; }
ul.alarms .name { font-family: ui-monospace, monospace; font-size: 12px; }
ul.alarms .reason { grid-column: 2; color: var(--muted); font-size: 12px; }
.state { font-weight: 700; font-size: 11px; padding: 1px 6px; border-radius: 10px; justify-self: start; align-self: start; grid-row: span 2; }
.state-OK { background: #dafbe1; color: var(--ok); }
.state-ALARM { background: var(--alarm); color: #fff; }
.state-INSUFFICIENT_DATA { background: #eaeef2; color: var(--muted); }
.empty { color: var(--muted); font-style: italic; }
.columns { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 1fr); gap: 16px; align-items: start; }
@media (max-width: 900px) { .columns { grid-template-columns: 1fr; } }
`;

/** The page's script, served as `/dashboard.js`. */
export const DASHBOARD_SCRIPT = String.raw`
'use strict';
var SVG_NS = 'http://www.w3.org/2000/svg';
var MAX_SAMPLES = 5000;
var samples = [];
var intervalMs = 2000;

var RECORD_SERIES = [
  { key: 'records', label: 'records ingested (files)', color: '#0969da', get: function (s) { return s.records; } },
  { key: 'scored', label: 'signals scored', color: '#1a7f37', get: function (s) { return s.scored; } },
  { key: 'rejected', label: 'records rejected', color: '#bc4c00',
    get: function (s) { return s.rejected.s3 + s.rejected.db + s.rejected.kafka + s.rejected.scorer; } },
];
var QUEUE_SERIES = [
  { key: 'fileEvents', label: 'file-events queue', color: '#8250df', get: function (s) { return s.queues.fileEvents; } },
  { key: 'signals', label: 'signals queue', color: '#0969da', get: function (s) { return s.queues.signals; } },
  { key: 'dlq', label: 'DLQs (all three)', color: '#cf222e', get: function (s) { return s.dlq; } },
];

function $(id) { return document.querySelector('[data-testid="' + id + '"]'); }
function el(tag, attrs, text) {
  var e = document.createElement(tag);
  if (attrs) for (var k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function svg(tag, attrs, text) {
  var e = document.createElementNS(SVG_NS, tag);
  for (var k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = String(text);
  return e;
}
function pad(n) { return (n < 10 ? '0' : '') + n; }
function clock(t) { var d = new Date(t); return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()); }
function fmt(n) { return typeof n === 'number' && isFinite(n) ? n.toLocaleString('en-US') : '–'; }
function short(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + 'M';
  if (n >= 1e3) return (n / 1e3).toFixed(n >= 1e4 ? 0 : 1) + 'k';
  return String(Math.round(n * 100) / 100);
}

/** The smallest of 1, 2, 5 times a power of ten at or above v (axis tops read well). */
function niceCeil(v) {
  if (!(v > 0)) return 1;
  var p = Math.pow(10, Math.floor(Math.log10(v)));
  var steps = [1, 2, 5, 10];
  for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
  return 10 * p;
}

function drawChart(id, series) {
  var fig = $(id);
  var box = fig.querySelector('svg');
  var legend = fig.querySelector('.legend');
  var W = 600, H = 220, L = 48, R = 10, T = 10, B = 24;
  box.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
  box.replaceChildren();
  legend.replaceChildren();
  var t0 = samples.length ? samples[0].t : Date.now();
  var t1 = samples.length ? samples[samples.length - 1].t : t0;
  if (t1 - t0 < 1000) t0 = t1 - 1000;
  var max = 0;
  series.forEach(function (s) { samples.forEach(function (p) { max = Math.max(max, s.get(p)); }); });
  var top = niceCeil(max * 1.05);
  var x = function (t) { return L + ((t - t0) / (t1 - t0)) * (W - L - R); };
  var y = function (v) { return H - B - (v / top) * (H - T - B); };
  [0, 0.5, 1].forEach(function (f) {
    var v = top * f;
    box.appendChild(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    box.appendChild(svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, short(v)));
  });
  box.appendChild(svg('line', { class: 'axis', x1: L, x2: L, y1: T, y2: H - B }));
  box.appendChild(svg('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
  box.appendChild(svg('text', { x: L, y: H - 6 }, clock(t0)));
  box.appendChild(svg('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, clock(t1)));
  series.forEach(function (s) {
    var d = '';
    var last = 0, peak = 0;
    samples.forEach(function (p, i) {
      var v = s.get(p);
      last = v; peak = Math.max(peak, v);
      d += (i ? ' L' : 'M') + x(p.t).toFixed(1) + ' ' + y(v).toFixed(1);
    });
    box.appendChild(svg('path', {
      class: 'series', 'data-testid': 'series-' + s.key, stroke: s.color, d: d,
      'data-points': samples.length, 'data-last': last, 'data-max': peak,
    }));
    var item = el('span', { 'data-testid': 'legend-' + s.key });
    var swatch = el('span', { class: 'swatch' });
    swatch.style.background = s.color;
    item.appendChild(swatch);
    item.appendChild(document.createTextNode(s.label + ': ' + fmt(last)));
    legend.appendChild(item);
  });
}

function tile(label, value, testid, bad) {
  var t = el('div', { class: 'tile' + (bad ? ' bad' : ''), 'data-testid': testid });
  t.appendChild(el('div', { class: 'label' }, label));
  t.appendChild(el('div', { class: 'value', 'data-testid': testid + '-value' }, fmt(value)));
  return t;
}

function renderTiles(st) {
  var depth = function (q) { return st.queues[q].visible + st.queues[q].inFlight; };
  var records = st.records;
  var rejected = st.rejected.s3 + st.rejected.db + st.rejected.kafka + st.rejected.scorer;
  // The ledger sweep's last count of items nothing will carry on (none until it has run).
  var stuck = st.sweep && st.sweep.stuck
    ? Object.keys(st.sweep.stuck).reduce(function (n, k) { return n + st.sweep.stuck[k]; }, 0)
    : null;
  $('tiles').replaceChildren(
    tile('files SUCCESS', st.ledger.SUCCESS, 'files-success'),
    tile('files FAILED', st.ledger.FAILED, 'files-failed', st.ledger.FAILED > 0),
    tile('files in progress', st.ledger.PROCESSING + st.ledger.DISCOVERED, 'files-processing'),
    tile('files stuck (sweep)', stuck, 'files-stuck', stuck > 0),
    tile('records ingested', records, 'records'),
    tile('records rejected', rejected, 'rejected'),
    tile('signals scored', st.scored, 'scored'),
    tile('anomalies', st.anomalies, 'anomalies'),
    tile('file-events queue', depth('fileEvents'), 'queue-fileEvents'),
    tile('signals queue', depth('signals'), 'queue-signals'),
    tile('DLQ depth (all)', st.dlq, 'dlq-depth', st.dlq > 0),
    tile('file-events DLQ', depth('fileEventsDlq'), 'dlq-fileEventsDlq', depth('fileEventsDlq') > 0),
    tile('signals DLQ', depth('signalsDlq'), 'dlq-signalsDlq', depth('signalsDlq') > 0),
    tile('Kafka failures', depth('kafkaFailures'), 'dlq-kafkaFailures', depth('kafkaFailures') > 0),
    tile(
      'Kafka batches awaiting replay',
      st.kafkaFailures.awaitingReplay,
      'kafka-awaiting-replay',
      st.kafkaFailures.awaitingReplay > 0
    )
  );
}

function renderEndpoints(endpoints) {
  var dl = $('endpoints');
  dl.replaceChildren();
  ['dashboard', 's3', 'sqs', 'dynamodb', 'postgres', 'kafka', 'kafkaTopic'].forEach(function (k) {
    if (!endpoints[k]) return;
    var wrap = el('div', { 'data-testid': 'endpoint-' + k });
    wrap.appendChild(el('dt', null, k));
    wrap.appendChild(el('dd', null, endpoints[k]));
    dl.appendChild(wrap);
  });
}

function renderLedger(files) {
  var body = $('ledger-table').querySelector('tbody');
  body.replaceChildren();
  if (!files.length) {
    var tr = el('tr', { 'data-testid': 'ledger-empty' });
    tr.appendChild(el('td', { colspan: 7, class: 'empty' }, 'no files yet: drop one under incoming/'));
    body.appendChild(tr);
    return;
  }
  files.forEach(function (f) {
    var tr = el('tr', { 'data-testid': 'ledger-row', 'data-key': f.key, 'data-status': f.status });
    tr.appendChild(el('td', { class: 'key', 'data-testid': 'ledger-key', title: 'ETag ' + f.etag }, f.key));
    var status = el('td', { 'data-testid': 'ledger-status' });
    status.appendChild(el('span', { class: 'status status-' + f.status }, f.status));
    tr.appendChild(status);
    tr.appendChild(el('td', { class: 'num', 'data-testid': 'ledger-records' }, f.records));
    tr.appendChild(el('td', { class: 'num', 'data-testid': 'ledger-rejected' }, f.rejected));
    tr.appendChild(el('td', { class: 'num', 'data-testid': 'ledger-attempts' }, f.attempts));
    tr.appendChild(el('td', { 'data-testid': 'ledger-updated' }, clock(Date.parse(f.updatedAt))));
    var error = el('td', { class: 'error', 'data-testid': 'ledger-error' }, f.error || '');
    if (f.firstErrors && f.firstErrors.length) error.setAttribute('title', f.firstErrors.join('\n'));
    if (!f.error && f.firstErrors && f.firstErrors.length) {
      error.className = '';
      error.textContent = f.firstErrors[0] + (f.firstErrors.length > 1 ? ' (+' + (f.firstErrors.length - 1) + ' more)' : '');
    }
    tr.appendChild(error);
    body.appendChild(tr);
  });
}

function renderAnomalies(anomalies) {
  var body = $('anomalies-table').querySelector('tbody');
  body.replaceChildren();
  if (!anomalies.length) {
    var tr = el('tr', { 'data-testid': 'anomalies-empty' });
    tr.appendChild(el('td', { colspan: 5, class: 'empty' }, 'no anomalies'));
    body.appendChild(tr);
    return;
  }
  anomalies.forEach(function (a) {
    var tr = el('tr', { 'data-testid': 'anomaly-row' });
    tr.appendChild(el('td', null, a.source));
    tr.appendChild(el('td', null, a.name));
    tr.appendChild(el('td', { class: 'num' }, fmt(a.value)));
    tr.appendChild(el('td', { class: 'num' }, typeof a.score === 'number' ? a.score.toFixed(2) : '–'));
    tr.appendChild(el('td', null, a.timestamp));
    body.appendChild(tr);
  });
}

function renderAlarms(alarms) {
  var list = $('alarms').querySelector('ul');
  list.replaceChildren();
  if (!alarms.length) list.appendChild(el('li', { class: 'empty' }, 'not evaluated yet'));
  alarms.forEach(function (a) {
    var li = el('li', { 'data-testid': 'alarm', 'data-name': a.name, 'data-state': a.state });
    li.appendChild(el('span', { class: 'state state-' + a.state, 'data-testid': 'alarm-state' }, a.state));
    li.appendChild(el('span', { class: 'name' }, a.name));
    li.appendChild(el('span', { class: 'reason' }, a.reason));
    list.appendChild(li);
  });
  var firing = alarms.filter(function (a) { return a.state === 'ALARM'; }).length;
  $('alarms-count').textContent = firing ? firing + ' in ALARM' : 'none in ALARM';
}

function showError(message) {
  var banner = $('error-banner');
  if (message) { banner.textContent = message; banner.hidden = false; } else { banner.textContent = ''; banner.hidden = true; }
}

function render(snapshot) {
  var st = snapshot.status;
  if (snapshot.error) {
    showError('Sampling failed at ' + clock(Date.parse(snapshot.error.at)) + ': ' + snapshot.error.message +
      (st ? ' (showing the data of ' + clock(Date.parse(st.at)) + ')' : ''));
  } else {
    showError('');
  }
  if (!st) return;
  $('updated-at').textContent = 'updated ' + clock(Date.parse(st.at));
  renderEndpoints(st.endpoints);
  renderTiles(st);
  renderLedger(st.files);
  renderAnomalies(st.recentAnomalies);
  renderAlarms(snapshot.alarms);
}

function getJson(path) {
  return fetch(path, { cache: 'no-store' }).then(function (r) {
    if (!r.ok) throw new Error(path + ' answered ' + r.status);
    return r.json();
  });
}

var ticking = false;
function tick() {
  if (ticking) return;
  ticking = true;
  var since = samples.length ? samples[samples.length - 1].t : null;
  Promise.all([getJson('/api/status'), getJson('/api/history' + (since === null ? '' : '?since=' + since))])
    .then(function (out) {
      var snapshot = out[0];
      samples = samples.concat(out[1].samples);
      if (samples.length > MAX_SAMPLES) samples = samples.slice(samples.length - MAX_SAMPLES);
      render(snapshot);
      drawChart('chart-records', RECORD_SERIES);
      drawChart('chart-queues', QUEUE_SERIES);
      document.body.setAttribute('data-samples', String(samples.length));
      if (snapshot.sampleIntervalMs && snapshot.sampleIntervalMs !== intervalMs) {
        intervalMs = Math.max(250, snapshot.sampleIntervalMs);
        clearInterval(timer);
        timer = setInterval(tick, intervalMs);
      }
    })
    .catch(function (err) {
      showError('The dashboard server does not answer: ' + err.message);
    })
    .then(function () { ticking = false; });
}
var timer = setInterval(tick, intervalMs);
tick();
`;

/** The page: HTML only, which loads {@link DASHBOARD_STYLE} and {@link DASHBOARD_SCRIPT} from its own server. */
export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pulse Ingest · offline dashboard</title>
<link rel="stylesheet" href="/dashboard.css">
</head>
<body data-samples="0">
<header data-testid="header">
  <h1>Pulse Ingest · offline</h1>
  <span class="updated" data-testid="updated-at">waiting for the first sample…</span>
  <dl data-testid="endpoints"></dl>
</header>
<main>
  <div class="banner" data-testid="error-banner" role="alert" hidden></div>
  <div class="tiles" data-testid="tiles"></div>
  <div class="charts">
    <figure data-testid="chart-records">
      <figcaption>Records ingested and signals scored</figcaption>
      <svg class="chart" role="img" aria-label="records and signals over time"></svg>
      <div class="legend"></div>
    </figure>
    <figure data-testid="chart-queues">
      <figcaption>Queue and DLQ depth (visible + in flight)</figcaption>
      <svg class="chart" role="img" aria-label="queue and DLQ depth over time"></svg>
      <div class="legend"></div>
    </figure>
  </div>
  <div class="columns">
    <section>
      <h2>File ledger</h2>
      <table data-testid="ledger-table">
        <thead><tr><th>key</th><th>status</th><th class="num">records</th><th class="num">rejected</th><th class="num">attempts</th><th>updated</th><th>error</th></tr></thead>
        <tbody></tbody>
      </table>
    </section>
    <section data-testid="alarms">
      <h2>Alarms <small data-testid="alarms-count"></small></h2>
      <ul class="alarms"></ul>
    </section>
  </div>
  <section>
    <h2>Recent anomalies</h2>
    <table data-testid="anomalies-table">
      <thead><tr><th>source</th><th>name</th><th class="num">value</th><th class="num">score</th><th>timestamp</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script src="/dashboard.js"></script>
</body>
</html>
`;
