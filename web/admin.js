/* admin.js: the behaviour of vdmini's admin page. Talks to the admin API with the admin key,
 * shows the server's state (/admin/status), lists models, analyses and distillations (polling,
 * faster while a run is unfinished), draws a finished analysis as an SVG chart built here from its
 * JSON report, and follows a distillation's server-sent events (read through fetch, which can
 * send the key) to draw its loss terms live.
 * Plain browser JavaScript, no framework. */
'use strict';

const KEY_STORAGE = 'vdmini.adminKey';
const POLL_MS = 2000;       /* while an analysis or distillation is unfinished */
const IDLE_POLL_MS = 10000; /* otherwise, for the server panel's queue and memory */
const SVG_NS = 'http://www.w3.org/2000/svg';
const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
const LOSS_TERMS = ['task', 'icd', 'mca', 'disc', 'loss'];
const CURVE_POINTS_MAX = 2000; /* older points are thinned to keep the chart light */

const el = (id) => document.getElementById(id);

/* ---------- the admin API ---------- */

function adminKey() {
  return localStorage.getItem(KEY_STORAGE) || '';
}

async function admin(path, options = {}) {
  const headers = { Authorization: `Bearer ${adminKey()}`, ...(options.headers || {}) };
  if (options.body) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: described by the status below */
  }
  if (!response.ok) {
    const error = body?.error;
    const where = error?.param ? ` (${error.param})` : '';
    throw new Error((error?.message || `The server answered ${response.status}`) + where);
  }
  return body;
}

function showError(error) {
  const node = el('admin-error');
  node.textContent = error ? error.message || String(error) : '';
  node.hidden = !error;
}

/* Runs an action, showing its error above the panels. */
async function attempt(action) {
  try {
    await action();
    showError(null);
  } catch (error) {
    showError(error);
  }
}

/* ---------- small DOM helpers ---------- */

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = text;
  row.append(td);
  return td;
}

function button(label, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.addEventListener('click', (event) => {
    event.stopPropagation();
    attempt(onClick);
  });
  return b;
}

function svg(tag, attributes = {}, text = '') {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function fillSelect(select, options, keep = true) {
  const previous = select.value;
  select.replaceChildren(...options.map(([value, label]) => new Option(label, value)));
  if (keep && options.some(([value]) => value === previous)) select.value = previous;
}

function duration(seconds) {
  if (!(seconds > 0)) return '';
  const s = Math.round(seconds);
  return s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.floor(s / 60) % 60} min`
    : s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

function statusText(run) {
  if (run.status === 'failed') return `failed: ${run.error?.message || ''}`;
  if (run.status === 'queued' && run.queue_position !== null) return `queued (#${run.queue_position + 1})`;
  return run.status.replace('_', ' ');
}

/* ---------- the server ---------- */

function mib(bytes) {
  return (bytes / 1048576).toFixed(1);
}

async function loadServer() {
  const s = await admin('/admin/status');
  const onGpu = s.device === 'cuda';
  const rows = [
    ['Device', onGpu ? 'GPU (CUDA)' : 'CPU'],
    ['State', !s.ready ? 'loading' : s.draining ? 'draining' : 'ready'],
    ['Model', s.switching_model ? `${s.serving_model}, switching to ${s.model}` : s.serving_model],
    ['Queue', `${s.queued} queued, ${s.running} running (at most ${s.max_queue} queued, ${s.max_batch} in a batch)`],
    ['GPU memory', onGpu ? `${mib(s.gpu_memory_used_bytes)} of ${mib(s.gpu_memory_total_bytes)} MiB in use`
      : 'none (CPU)'],
    ['Recorded forwards', onGpu ? `${s.recorded_forwards}, ${mib(s.recorded_forwards_bytes)} MiB of scratch`
      : 'none (CPU)'],
  ];
  const body = el('server-body');
  body.replaceChildren();
  for (const [name, value] of rows) {
    const row = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = name;
    row.append(th);
    cell(row, value);
    body.append(row);
  }
}

/* ---------- models ---------- */

let models = [];

async function loadModels() {
  models = (await admin('/admin/v1/models')).data;
  const body = el('models-body');
  body.replaceChildren();
  for (const m of models) {
    const row = document.createElement('tr');
    cell(row, m.id).title = m.path;
    cell(row, m.source === 'config' ? 'configuration' : m.source);
    cell(row, m.active ? (m.serving ? 'active' : 'active (switching)') : m.serving ? 'finishing videos' : '');
    const actions = cell(row, '');
    if (!m.active) actions.append(button('Activate', () => activate(m.id)));
    body.append(row);
  }
  const choices = models.map((m) => [m.id, m.active ? `${m.id} (active)` : m.id]);
  fillSelect(el('analysis-model'), choices);
  fillSelect(el('distill-teacher'), choices);
}

async function activate(id) {
  await admin(`/admin/v1/models/${encodeURIComponent(id)}/activate`, { method: 'POST' });
  await loadModels();
}

/* ---------- analyses ---------- */

let selectedAnalysis = '';

async function loadAnalyses() {
  const runs = (await admin('/admin/v1/analyses')).data;
  const body = el('analyses-body');
  body.replaceChildren();
  for (const run of runs.slice().reverse()) {
    const row = document.createElement('tr');
    row.classList.toggle('selected', run.id === selectedAnalysis);
    cell(row, run.id);
    cell(row, run.request?.model || '');
    cell(row, statusText(run));
    const p = run.progress;
    cell(row, p ? `${p.percent}%${run.status === 'in_progress' ? ` (${p.current})` : ''}` : '');
    const actions = cell(row, '');
    if (run.status === 'completed') actions.append(button('Chart', () => showAnalysis(run.id)));
    if (!TERMINAL.has(run.status)) {
      actions.append(button('Cancel', () => admin(`/admin/v1/analyses/${run.id}/cancel`, { method: 'POST' })));
    }
    body.append(row);
  }
  const done = runs.filter((run) => run.status === 'completed');
  fillSelect(el('distill-analysis'), done.reverse().map((run) => [run.id, `${run.id} (${run.request.model})`]));
  return runs.some((run) => !TERMINAL.has(run.status));
}

async function showAnalysis(id) {
  selectedAnalysis = id;
  const run = await admin(`/admin/v1/analyses/${id}`);
  const report = run.report;
  if (!report) throw new Error(`The report of ${id} is not available.`);
  el('analysis-caption').textContent =
    `${id}: ${run.request.model}, ${report.prompts} prompts, ${report.steps} steps; intact model: ` +
    `content ${report.teacher.content.toFixed(3)}, motion ${report.teacher.motion.toFixed(3)}`;
  el('analysis-chart').replaceChildren(analysisChart(report.blocks));
  const o = report.observation;
  const f = (v) => (typeof v === 'number' ? v.toFixed(3) : '?');
  el('analysis-verdict').textContent = o
    ? `"Shallow blocks matter for content, deep ones for motion" ${o.holds ? 'holds' : 'does not hold'} here: ` +
      `removing a shallow block costs ${f(o.shallow_content_drop)} content and ${f(o.shallow_motion_drop)} motion, ` +
      `a deep one ${f(o.deep_content_drop)} content and ${f(o.deep_motion_drop)} motion (mean drops).`
    : '';
  el('analysis-figure').hidden = false;
  await loadAnalyses();
}

/* Two bands per block: above, the content and motion drop when the block is removed, and the
 * direction rate's drop where the report has it (a shared axis through zero); below, the block's
 * share of the parameters and of a denoiser step's latency. */
function analysisChart(blocks) {
  const width = 900, left = 48, right = 12, top = 28, dropHeight = 180, gap = 40, shareHeight = 110;
  const bottom = 56, height = top + dropHeight + gap + shareHeight + bottom;
  const slot = (width - left - right) / Math.max(blocks.length, 1);
  const bar = Math.max(2, slot / 5);
  const withDirection = blocks.every((b) => typeof b.direction_drop === 'number');
  const drops = blocks.flatMap((b) => [b.content_drop, b.motion_drop, withDirection ? b.direction_drop : 0]);
  const high = Math.max(0.01, ...drops), low = Math.min(0, ...drops);
  const dropY = (v) => top + (high - v) / (high - low) * dropHeight;
  const shareTop = top + dropHeight + gap;
  const shares = blocks.flatMap((b) => [b.param_share, Math.max(0, b.latency_share)]);
  const shareMax = Math.max(0.05, ...shares);
  const shareY = (v) => shareTop + shareHeight - Math.max(0, v) / shareMax * shareHeight;
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': 'Content, motion and direction drop, parameter and latency share of each block' });

  const axis = (y, label) => {
    chart.append(svg('line', { x1: left, x2: width - right, y1: y, y2: y, class: 'axis' }));
    chart.append(svg('text', { x: left - 4, y: y + 4, 'text-anchor': 'end' }, label));
  };
  axis(dropY(0), '0');
  chart.append(svg('line', { x1: left, x2: width - right, y1: dropY(high), y2: dropY(high), class: 'grid' }));
  chart.append(svg('text', { x: left - 4, y: dropY(high) + 4, 'text-anchor': 'end' }, high.toFixed(2)));
  chart.append(svg('text', { x: left, y: top - 10 }, 'drop in the evaluator\'s score without the block'));
  axis(shareY(0), '0%');
  chart.append(svg('text', { x: left - 4, y: shareY(shareMax) + 4, 'text-anchor': 'end' },
    `${Math.round(shareMax * 100)}%`));
  chart.append(svg('text', { x: left, y: shareTop - 8 }, 'share of the parameters and of a step\'s time'));

  const barAt = (x, value, y0, yOf, cls, title) => {
    const y = yOf(value);
    const r = svg('rect', { x, y: Math.min(y, y0), width: bar, height: Math.max(1, Math.abs(y - y0)), class: cls });
    r.append(svg('title', {}, title));
    chart.append(r);
  };
  blocks.forEach((b, i) => {
    const x = left + i * slot + slot / 2;
    barAt(x - bar, b.content_drop, dropY(0), dropY, 'series-content', `${b.block}: content drop ${b.content_drop.toFixed(4)}`);
    barAt(x, b.motion_drop, dropY(0), dropY, 'series-motion', `${b.block}: motion drop ${b.motion_drop.toFixed(4)}`);
    if (withDirection) {
      barAt(x + bar, b.direction_drop, dropY(0), dropY, 'series-direction',
        `${b.block}: direction drop ${b.direction_drop.toFixed(4)}`);
    }
    barAt(x - bar, b.param_share, shareY(0), shareY, 'series-params',
      `${b.block}: ${(b.param_share * 100).toFixed(1)}% of the parameters`);
    barAt(x, Math.max(0, b.latency_share), shareY(0), shareY, 'series-latency',
      `${b.block}: ${(b.latency_share * 100).toFixed(1)}% of the latency`);
    const labelY = shareY(0) + 12;
    chart.append(svg('text', { x, y: labelY, 'text-anchor': 'end', transform: `rotate(-40 ${x} ${labelY})` }, b.block));
  });
  const legend = [['series-content', 'content drop'], ['series-motion', 'motion drop'],
    ...(withDirection ? [['series-direction', 'direction drop']] : []),
    ['series-params', 'parameter share'], ['series-latency', 'latency share']];
  legend.forEach(([cls, label], i) => {
    const x = width - right - (legend.length - i) * 130;
    chart.append(svg('rect', { x, y: 6, width: 10, height: 10, class: cls }));
    chart.append(svg('text', { x: x + 14, y: 15 }, label));
  });
  return chart;
}

/* ---------- distillations ---------- */

let followed = null; /* { id, points, abort } of the distillation whose curves are drawn */

async function loadDistillations() {
  const runs = (await admin('/admin/v1/distillations')).data;
  const body = el('distillations-body');
  body.replaceChildren();
  for (const run of runs.slice().reverse()) {
    const row = document.createElement('tr');
    row.classList.toggle('selected', run.id === followed?.id);
    cell(row, run.id);
    cell(row, run.request?.teacher || '');
    cell(row, run.status === 'completed' ? `completed: model ${run.model}` : statusText(run));
    const p = run.progress;
    cell(row, p ? `${p.step} / ${p.total}` : '');
    cell(row, run.status === 'in_progress' && p ? duration(p.eta_seconds) : '');
    const actions = cell(row, '');
    actions.append(button('Curves', () => follow(run.id)));
    if (!TERMINAL.has(run.status)) {
      actions.append(button('Cancel', () => admin(`/admin/v1/distillations/${run.id}/cancel`, { method: 'POST' })));
    }
    body.append(row);
  }
  return runs.some((run) => !TERMINAL.has(run.status));
}

/* Reads a server-sent event stream through fetch (EventSource cannot send the admin key) and
 * calls onEvent(type, data) for each event. */
async function readEvents(path, signal, onEvent) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${adminKey()}` }, signal });
  if (!response.ok || !response.body) throw new Error(`The event stream answered ${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = 'message', data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) type = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (data) onEvent(type, JSON.parse(data));
    }
  }
}

function follow(id) {
  if (followed) followed.abort.abort();
  followed = { id, points: [], abort: new AbortController() };
  const current = followed;
  el('curves-figure').hidden = false;
  el('curves-caption').textContent = `${id}: loss terms (unweighted) against the step`;
  drawCurves(current);
  readEvents(`/admin/v1/distillations/${id}/events`, current.abort.signal, (type, data) => {
    const p = data.progress;
    if (p && typeof p.step === 'number') {
      if (!current.points.length || p.step > current.points[current.points.length - 1].step) current.points.push(p);
      if (current.points.length > CURVE_POINTS_MAX) current.points = current.points.filter((_, i) => i % 2 === 0);
      drawCurves(current);
    }
    if (TERMINAL.has(type)) attempt(loadDistillations);
  }).catch((error) => {
    if (error.name !== 'AbortError') showError(error);
  });
}

/* The loss terms against the step, on a logarithmic axis (they differ by orders of magnitude). */
function drawCurves(state) {
  const width = 900, height = 300, left = 56, right = 12, top = 24, bottom = 30;
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Loss terms against the step' });
  const points = state.points;
  const values = points.flatMap((p) => LOSS_TERMS.map((t) => p[t]).filter((v) => v > 0));
  if (!values.length) {
    chart.append(svg('text', { x: left, y: height / 2 }, 'Waiting for the first step...'));
    el('curves-chart').replaceChildren(chart);
    return;
  }
  const lo = Math.log10(Math.min(...values)), hi = Math.max(lo + 0.1, Math.log10(Math.max(...values)));
  const first = points[0].step, last = Math.max(points[points.length - 1].step, first + 1);
  const x = (step) => left + (step - first) / (last - first) * (width - left - right);
  const y = (v) => top + (hi - Math.log10(v)) / (hi - lo) * (height - top - bottom);
  chart.append(svg('line', { x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, class: 'axis' }));
  chart.append(svg('line', { x1: left, x2: left, y1: top, y2: height - bottom, class: 'axis' }));
  for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) {
    chart.append(svg('line', { x1: left, x2: width - right, y1: y(10 ** e), y2: y(10 ** e), class: 'grid' }));
    chart.append(svg('text', { x: left - 4, y: y(10 ** e) + 4, 'text-anchor': 'end' }, `1e${e}`));
  }
  chart.append(svg('text', { x: left, y: height - 8 }, `step ${first}`));
  chart.append(svg('text', { x: width - right, y: height - 8, 'text-anchor': 'end' }, `step ${last}`));
  LOSS_TERMS.forEach((term, i) => {
    const coords = points.filter((p) => p[term] > 0).map((p) => `${x(p.step).toFixed(1)},${y(p[term]).toFixed(1)}`);
    if (coords.length) chart.append(svg('polyline', { points: coords.join(' '), class: `series-${term}` }));
    const lx = left + 10 + i * 90;
    chart.append(svg('line', { x1: lx, x2: lx + 16, y1: 10, y2: 10, class: `series-${term}`, 'stroke-width': 3 }));
    chart.append(svg('text', { x: lx + 20, y: 14 }, term));
  });
  el('curves-chart').replaceChildren(chart);
}

/* ---------- forms ---------- */

function numberField(id) {
  const value = el(id).value.trim();
  return value === '' ? undefined : Number(value);
}

/* The names typed into a text field, split at commas and spaces; undefined when there are none. */
function listField(id) {
  const names = el(id).value.split(/[\s,]+/).filter(Boolean);
  return names.length ? names : undefined;
}

async function submitAnalysis(event) {
  event.preventDefault();
  await attempt(async () => {
    await admin('/admin/v1/analyses', { method: 'POST', body: JSON.stringify({
      model: el('analysis-model').value || undefined, prompts: numberField('analysis-prompts'),
      steps: numberField('analysis-steps'), seed: numberField('analysis-seed'),
      guidance: numberField('analysis-guidance'), units: listField('analysis-units'),
    }) });
    poll();
  });
}

function showPlanFields() {
  const fromAnalysis = el('distill-plan').value === 'analysis';
  for (const node of document.querySelectorAll('.plan-analysis')) node.hidden = !fromAnalysis;
  for (const node of document.querySelectorAll('.plan-remove')) node.hidden = fromAnalysis;
}

async function submitDistillation(event) {
  event.preventDefault();
  await attempt(async () => {
    let config;
    try {
      config = JSON.parse(el('distill-config').value || '{}');
    } catch (error) {
      throw new Error(`The training options are not JSON: ${error.message}`);
    }
    const plan = el('distill-plan').value === 'analysis'
      ? { analysis: el('distill-analysis').value, [el('distill-measure').value]: numberField('distill-fraction'),
          rule: el('distill-rule').value }
      : { remove: listField('distill-remove') || [] };
    const run = await admin('/admin/v1/distillations', { method: 'POST', body: JSON.stringify({
      teacher: el('distill-teacher').value || undefined, plan, gpus: numberField('distill-gpus'), config }) });
    follow(run.id);
    poll();
  });
}

/* ---------- refreshing ---------- */

let pollTimer = 0;

async function refresh() {
  await loadServer();
  await loadModels();
  const analysesRunning = await loadAnalyses();
  const distillationsRunning = await loadDistillations();
  return analysesRunning || distillationsRunning;
}

function poll() {
  clearTimeout(pollTimer);
  attempt(async () => {
    pollTimer = setTimeout(poll, (await refresh()) ? POLL_MS : IDLE_POLL_MS);
  });
}

function showKeyState() {
  el('admin-key-state').textContent = adminKey() ? '(set)' : '(not set)';
}

el('admin-key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  localStorage.setItem(KEY_STORAGE, el('admin-key').value.trim());
  el('admin-key').value = '';
  showKeyState();
  poll();
});
el('admin-key-clear').addEventListener('click', () => {
  localStorage.removeItem(KEY_STORAGE);
  showKeyState();
});
el('analysis-form').addEventListener('submit', submitAnalysis);
el('distillation-form').addEventListener('submit', submitDistillation);
el('distill-plan').addEventListener('change', showPlanFields);
showKeyState();
showPlanFields();
if (adminKey()) poll();
