/* test_browser.mjs: the web page in a real headless Chromium (Debian's, driven by playwright-core)
 * against a real vdminid serving a tiny random model: a prompt becomes a video that plays (or,
 * where the browser lacks H.264, a valid MP4 download and a thumbnail), progress moves as the
 * events stream reports it, the recent list shows the video, cancel stops a running job, delete
 * removes one, a bad request shows the server's error in words, the guide scale is offered (and
 * sent) only for a model with a guide, and with API keys the page asks for one and then works
 * with it. The admin page, with an admin key, runs a block-importance analysis of a very small
 * model and charts it, draws a distillation's loss terms as they come and activates the model
 * the distillation registered.
 *
 *   top_srcdir=... top_builddir=... node --test tests/web/test_browser.mjs
 *
 * Screenshots go to $TMPDIR (or the system's temporary directory). */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SRCDIR = path.resolve(process.env.top_srcdir || path.join(HERE, '..', '..'));
const BUILDDIR = path.resolve(process.env.top_builddir || SRCDIR);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT_DIR = process.env.TMPDIR || os.tmpdir();
const STARTUP_TIMEOUT_MS = 60_000;
const JOB_TIMEOUT_MS = 180_000;
const API_KEY = 'web-test-key-0123456789';
const H264 = 'video/mp4; codecs="avc1.64001f"';

let workDir = '';
let modelPath = '';
const daemons = [];   /* every vdminid started here, stopped at the end */
let server = null;    /* the one without API keys that most tests use */
let browser = null;
let page = null;
let pageProblems = [];
let eventStreams = []; /* responses of GET /v1/videos/{id}/events seen by the page */

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function waitForHealth(daemon) {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (daemon.child.exitCode !== null) {
      throw new Error(`vdminid exited with ${daemon.child.exitCode}:\n${daemon.log}`);
    }
    try {
      const response = await fetch(`${daemon.url}/healthz`);
      if (response.ok) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`vdminid did not become healthy in ${STARTUP_TIMEOUT_MS} ms:\n${daemon.log}`);
}

/* Starts vdminid on a free port with its own data directory; extra are more flags. */
async function startDaemon(name, extra = [], model = modelPath) {
  const port = await freePort();
  const child = spawn(path.join(BUILDDIR, 'vdminid'), [
    '--model', model,
    '--data-dir', path.join(workDir, `data-${name}`),
    '--listen', `127.0.0.1:${port}`,
    '--set', `web_dir=${path.join(SRCDIR, 'web')}`,
    '--set', 'extra_models=', /* the shipped student stays out of these tests' registries */
    '--set', 'guide=none', /* no guide unless a test gives one (extra comes after, and wins) */
    ...extra,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  const daemon = { name, child, url: `http://127.0.0.1:${port}`, log: '' };
  const keep = (chunk) => { daemon.log = (daemon.log + chunk).slice(-20_000); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  daemons.push(daemon);
  await waitForHealth(daemon);
  return daemon;
}

async function stopDaemon(daemon) {
  const { child } = daemon;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/* A fresh browser context (its own localStorage) and page, watched for problems. */
async function openPage() {
  await page?.context().close();
  page = await (await browser.newContext({ viewport: { width: 1200, height: 1000 } })).newPage();
  pageProblems = [];
  eventStreams = [];
  page.on('pageerror', (error) => pageProblems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') pageProblems.push(`console: ${message.text()}`);
  });
  page.on('response', (response) => {
    if (/\/v1\/videos\/[^/]+\/events$/.test(response.url())) {
      eventStreams.push({ url: response.url(), status: response.status(),
        type: response.headers()['content-type'] || '' });
    }
  });
}

async function screenshot(name) {
  const file = path.join(SCREENSHOT_DIR, `vdmini-web-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
}

/* Runs one test's body; on failure saves a screenshot and adds what the page and the daemons
 * said to the error. */
function browserTest(name, body) {
  test(name, { timeout: JOB_TIMEOUT_MS * 2 }, async () => {
    try {
      await body();
    } catch (error) {
      await screenshot(`failure-${name.replace(/\W+/g, '-')}`).catch(() => {});
      const logs = daemons.map((d) => `vdminid ${d.name} log (tail):\n${d.log.slice(-3000)}`);
      const problems = pageProblems.join('\n') || '(none)';
      error.message += `\npage problems:\n${problems}\n${logs.join('\n')}`;
      throw error;
    }
  });
}

async function videoStatus(id) {
  return (await (await fetch(`${server.url}/v1/videos/${id}`)).json()).status;
}

/* Sets the form; a size the server does not offer falls back to the smallest one offered. */
async function fillForm({ prompt, frames, steps, seed = '', size }) {
  await page.fill('#prompt', prompt);
  const sizes = await page.$$eval('#size option', (options) => options.map((o) => o.value));
  const area = (text) => text.split('x').reduce((a, b) => a * b, 1);
  const chosen = sizes.includes(size) ? size
    : sizes.reduce((best, s) => (area(s) < area(best) ? s : best), sizes[0]);
  await page.selectOption('#size', chosen);
  await page.fill('#frames', String(frames));
  await page.fill('#steps', String(steps));
  await page.fill('#seed', String(seed));
  return chosen;
}

/* Records every value the progress bar takes, so that a fast job's steps are not missed. */
async function recordProgress() {
  await page.evaluate(() => {
    const bar = document.getElementById('job-progress');
    window.progressSeen = [];
    new MutationObserver((records) => {
      for (const record of records) window.progressSeen.push(Number(record.oldValue));
      window.progressSeen.push(bar.value);
    }).observe(bar, { attributes: true, attributeFilter: ['value'], attributeOldValue: true });
  });
}

async function submit() {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/v1/videos') && r.request().method() === 'POST'),
    page.click('#generate'),
  ]);
  return { status: response.status(), body: await response.json() };
}

async function submitAndGetId() {
  const { status, body } = await submit();
  assert.equal(status, 200, `POST /v1/videos answered ${JSON.stringify(body)}`);
  assert.match(body.id, /^video_/);
  return body.id;
}

async function waitForStatus(status, timeout = JOB_TIMEOUT_MS) {
  await page.waitForFunction(
    (wanted) => document.getElementById('job-progress').dataset.status === wanted,
    status, { timeout, polling: 100 });
}

function assertEventsStreamed(id) {
  const stream = eventStreams.find((s) => s.url.endsWith(`/v1/videos/${id}/events`));
  assert.ok(stream, 'the page opened the events stream');
  assert.equal(stream.status, 200);
  assert.match(stream.type, /^text\/event-stream/);
}

/* The finished video in the player: plays where Chromium has H.264; elsewhere the page says so
 * and shows the thumbnail as the poster. Either way the download link gives an MP4. */
async function checkResult(id, size) {
  await page.waitForSelector('#job-result:not([hidden])');
  if (await page.$eval('#job-video', (video, type) => video.canPlayType(type), H264)) {
    await page.waitForFunction(() => {
      const video = document.getElementById('job-video');
      return video.error || video.readyState >= 2;
    }, null, { timeout: 30_000 });
    const playback = await page.$eval('#job-video', async (video) => {
      const start = video.currentTime;
      await video.play();
      const deadline = Date.now() + 5000;
      while (video.currentTime === start && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return {
        error: video.error?.message || null, readyState: video.readyState,
        advanced: video.currentTime !== start, size: `${video.videoWidth}x${video.videoHeight}`,
      };
    });
    assert.equal(playback.error, null);
    assert.ok(playback.readyState >= 2, `readyState ${playback.readyState}`);
    assert.ok(playback.advanced, 'currentTime advances');
    assert.equal(playback.size, size);
    console.log('H.264 playback: Chromium decoded and played the MP4');
  } else {
    assert.ok(await page.$eval('#job-video', (video) => video.poster), 'the poster is set');
    assert.ok(await page.isVisible('#job-playback-note'), 'the page says it cannot play H.264');
    console.log('H.264 playback: this Chromium cannot decode H.264; '
      + 'checked the download and the thumbnail instead');
  }

  /* Fetched inside the page: a blob: link (with a key) is only readable there. */
  const download = await page.$eval('#job-download', async (link) => {
    const response = await fetch(link.href);
    const bytes = new Uint8Array(await response.arrayBuffer());
    return {
      name: link.download, status: response.status,
      type: response.headers.get('content-type') || '',
      box: String.fromCharCode(...bytes.slice(4, 8)),
    };
  });
  assert.equal(download.name, `${id}.mp4`);
  assert.equal(download.status, 200);
  assert.match(download.type, /^video\/mp4/);
  assert.equal(download.box, 'ftyp', 'the download is an MP4');
}

async function waitForThumbnail(id) {
  const item = `#recent-list li[data-id="${id}"]`;
  await page.waitForSelector(`${item}[data-status="completed"]`, { timeout: 15_000 });
  await page.waitForFunction((selector) => {
    const image = document.querySelector(`${selector} img`);
    return image && image.complete && image.naturalWidth > 0;
  }, item, { timeout: 15_000 });
}

before(async () => {
  workDir = mkdtempSync(path.join(os.tmpdir(), 'vdmini-web-'));
  modelPath = path.join(workDir, 'tiny.safetensors');
  execFileSync(path.join(BUILDDIR, 'vdmini'),
    ['init', '--preset', 'tiny', '--seed', '1', '--out', modelPath], { stdio: 'pipe' });
  server = await startDaemon('open');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  await openPage();
});

after(async () => {
  if (page) await screenshot('final').catch(() => {});
  await browser?.close();
  for (const daemon of daemons) await stopDaemon(daemon);
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

let finishedId = '';

browserTest('the page loads with its defaults', async () => {
  const response = await page.goto(`${server.url}/`);
  assert.equal(response.status(), 200);
  assert.equal(await page.title(), 'vdmini');
  assert.equal(await page.inputValue('#size'), '128x128');
  assert.equal(await page.inputValue('#frames'), '16');
  assert.equal(await page.inputValue('#steps'), '25');
  assert.equal(await page.inputValue('#seed'), '');
  for (const id of ['prompt', 'image', 'size', 'frames', 'steps', 'seed']) {
    assert.ok(await page.$(`label[for="${id}"]`), `#${id} has a label`);
  }

  /* The form takes its limits and the vocabulary hint from GET /v1/models. */
  const model = (await (await fetch(`${server.url}/v1/models`)).json()).data.find((m) => m.active);
  await page.waitForSelector('#frames[max]');
  assert.equal(await page.getAttribute('#frames', 'max'), String(model.limits.max_frames));
  assert.equal(await page.getAttribute('#steps', 'max'), String(model.limits.max_steps));
  assert.ok(await page.isVisible('#vocabulary-hint'), 'the known words are offered');
  assert.match(await page.textContent('#vocabulary-words'), /circle/);
  assert.equal(model.guide, false);
  assert.ok(await page.isDisabled('#guide-scale'), 'no guide scale for a model without a guide');
  await page.click('.advanced summary');
  assert.ok(await page.isVisible('#guidance'));
  assert.ok(await page.isHidden('#guide-scale-field'), 'the guide scale field is hidden');
  assert.equal(await page.getAttribute('#eta', 'placeholder'), `default ${model.limits.default_eta}`);
  await page.selectOption('#sampler', 'euler');
  assert.ok(await page.isDisabled('#eta'), 'no fresh noise with Euler');
  await page.selectOption('#sampler', 'ddim');
  assert.ok(await page.isEnabled('#eta'));
  await page.selectOption('#sampler', '');
});

browserTest('a prompt becomes a video that plays', async () => {
  const size = await fillForm({
    prompt: 'a small red circle moves left on a blue background zorblax',
    frames: 4, steps: 3, seed: 7, size: '64x64',
  });
  await recordProgress();
  const id = await submitAndGetId();
  await page.waitForSelector('#job-panel:not([hidden])');
  await waitForStatus('completed');

  assertEventsStreamed(id);
  const seen = await page.evaluate(() => window.progressSeen);
  assert.ok(seen.some((value) => value > 0 && value < 100), `progress moved: ${seen}`);
  assert.equal(await page.$eval('#job-progress', (bar) => bar.value), 100);
  assert.match(await page.textContent('#job-status'), /Done/);
  assert.match(await page.textContent('#job-warning'), /zorblax/, 'the unknown word is reported');
  await checkResult(id, size);
  await screenshot('completed');
  finishedId = id;
});

browserTest('the recent list shows the video with its thumbnail', async () => {
  assert.ok(finishedId, 'needs the video of the previous test');
  await waitForThumbnail(finishedId);
  await page.click('#recent-refresh');
  await waitForThumbnail(finishedId);

  /* Clicking it opens it in the player. */
  await page.evaluate(() => document.getElementById('job-video').removeAttribute('src'));
  await page.click(`#recent-list li[data-id="${finishedId}"] .recent-open`);
  await page.waitForFunction((id) => {
    const video = document.getElementById('job-video');
    return (video.getAttribute('src') || '').includes(id);
  }, finishedId, { timeout: 15_000 });
});

browserTest('cancel stops a running job', async () => {
  const stepsMax = Number(await page.getAttribute('#steps', 'max')) || 200;
  await fillForm({
    prompt: 'a big blue square moves right on a green background',
    frames: 16, steps: Math.min(stepsMax, 200), size: '128x128',
  });
  const id = await submitAndGetId();
  await page.waitForSelector('#job-cancel:not([hidden])');
  await page.waitForFunction(() => document.getElementById('job-progress').value > 0,
    null, { timeout: JOB_TIMEOUT_MS, polling: 100 });
  await page.click('#job-cancel');
  await waitForStatus('cancelled', 30_000);
  assert.match(await page.textContent('#job-status'), /Cancelled/);
  assert.ok(await page.isHidden('#job-cancel'), 'no cancel button once cancelled');
  assert.equal(await videoStatus(id), 'cancelled');
  await page.waitForSelector(`#recent-list li[data-id="${id}"][data-status="cancelled"]`,
    { timeout: 15_000 });
  await screenshot('cancelled');
});

browserTest('a bad request shows the server error in words', async () => {
  const prompt = 'a red circle '.repeat(1000).trim();
  await fillForm({ prompt, frames: 4, steps: 2, size: '64x64' });
  const { status, body } = await submit();
  assert.equal(status, 400, 'a too long prompt is refused');
  assert.equal(body.error.param, 'prompt', `about the prompt: ${JSON.stringify(body)}`);
  assert.ok(body.error.message, 'the refusal has a message');
  await page.waitForSelector('#form-error:not([hidden])', { timeout: 15_000 });
  assert.equal((await page.textContent('#form-error')).trim(), body.error.message);
  await screenshot('bad-request');
});

browserTest('delete removes a finished video', async () => {
  assert.ok(finishedId, 'needs the video of the second test');
  const item = `#recent-list li[data-id="${finishedId}"]`;
  await page.click(`${item} .recent-delete`);
  await page.waitForSelector(item, { state: 'detached', timeout: 15_000 });
  assert.equal((await fetch(`${server.url}/v1/videos/${finishedId}`)).status, 404);
});

browserTest('the guide scale is offered for a model with a guide and sent', async () => {
  const guidePath = path.join(workDir, 'tiny-guide.safetensors');
  execFileSync(path.join(BUILDDIR, 'vdmini'),
    ['init', '--preset', 'tiny', '--seed', '2', '--out', guidePath], { stdio: 'pipe' });
  const guided = await startDaemon('guided', ['--set', `guide=${guidePath}`]);
  const model = (await (await fetch(`${guided.url}/v1/models`)).json()).data.find((m) => m.active);
  assert.equal(model.guide, true);
  await openPage();
  await page.goto(`${guided.url}/`);
  await page.click('.advanced summary');
  await page.waitForSelector('#guide-scale-field:not([hidden])', { timeout: 15_000 });
  assert.ok(await page.isEnabled('#guide-scale'));
  assert.equal(await page.getAttribute('#guide-scale', 'placeholder'),
    `default ${model.limits.default_guide_scale}`);
  assert.equal(await page.getAttribute('#guidance', 'placeholder'),
    `default ${model.limits.default_guidance_scale}`);
  await fillForm({ prompt: 'a red circle moves left', frames: 2, steps: 2, size: '64x64' });
  await page.fill('#guide-scale', '0.5');
  assert.equal(await page.getAttribute('#eta', 'placeholder'), `default ${model.limits.default_eta}`);
  await page.fill('#eta', '0.5');
  const { status, body } = await submit();
  assert.equal(status, 200, `POST /v1/videos answered ${JSON.stringify(body)}`);
  assert.equal(body.guide_scale, 0.5);
  assert.equal(body.eta, 0.5);
  await waitForStatus('completed');
  await screenshot('guided');
});

browserTest('with API keys the page asks for a key and then works with it', async () => {
  const secured = await startDaemon('keys', ['--set', `api_keys=${API_KEY}`]);
  await openPage();
  await page.goto(`${secured.url}/`);
  await page.waitForSelector('#recent-error:not([hidden])', { timeout: 15_000 });
  assert.ok(await page.$eval('#api-key-panel', (panel) => panel.open), 'the key field is shown');
  pageProblems = []; /* the refused requests above are expected */

  await page.fill('#api-key', API_KEY);
  await page.click('#api-key-form button[type="submit"]');
  await page.waitForSelector('#recent-error', { state: 'hidden', timeout: 15_000 });
  assert.equal(await page.textContent('#api-key-state'), '(set)');

  const size = await fillForm({
    prompt: 'a green triangle moves up', frames: 2, steps: 2, size: '64x64',
  });
  const id = await submitAndGetId();
  await waitForStatus('completed');
  assertEventsStreamed(id);
  /* the page fetches the video with the header once the job completes, then shows a blob */
  await page.waitForFunction(() => document.querySelector('#job-video').src.startsWith('blob:'), null,
    { timeout: 15_000 }).catch(() => {});
  assert.match(await page.$eval('#job-video', (video) => video.src), /^blob:/,
    'with a key the video is fetched with the header and shown from a blob');
  await checkResult(id, size);
  await waitForThumbnail(id);
  await screenshot('api-key');
});

browserTest('the admin page charts an analysis, draws distillation curves and activates a model', async () => {
  const adminKey = 'web-admin-key-0123456789';
  const smallModel = path.join(workDir, 'small.safetensors');
  execFileSync(path.join(BUILDDIR, 'tests', 'server', 'make_small_model'), ['7', smallModel], { stdio: 'pipe' });
  /* admin_cpu_priority normal: under the default (idle) the analysis would wait for the other
   * test suites of a parallel make check to leave a core free */
  const daemon = await startDaemon('admin', ['--set', `admin_keys=${adminKey}`,
    '--set', 'admin_cpu_priority=normal'], smallModel);
  const adminApi = async (route) =>
    (await fetch(`${daemon.url}${route}`, { headers: { Authorization: `Bearer ${adminKey}` } })).json();
  await openPage();
  await page.goto(`${daemon.url}/admin.html`);
  await page.fill('#admin-key', adminKey);
  await page.click('#admin-key-form button[type="submit"]');
  await page.waitForSelector('#models-body tr', { timeout: 15_000 });
  assert.match(await page.textContent('#models-body'), /small.*configuration.*active/);
  const server = await page.$$eval('#server-body tr',
    (rows) => rows.map((r) => [r.cells[0].textContent, r.cells[1].textContent]));
  const status = await adminApi('/admin/status');
  assert.deepEqual(Object.fromEntries(server), {
    Device: 'CPU', State: 'ready', Model: 'small',
    Queue: `0 queued, 0 running (at most ${status.max_queue} queued, ${status.max_batch} in a batch)`,
    'GPU memory': 'none (CPU)', 'Recorded forwards': 'none (CPU)' }, 'the server panel shows /admin/status');

  await page.fill('#analysis-prompts', '1');
  await page.fill('#analysis-steps', '2');
  await page.fill('#analysis-units', 'down.0.0, mid up.1.0.attn');
  await page.click('#analysis-form button[type="submit"]');
  await page.waitForSelector('#analyses-body button:text("Chart")', { timeout: JOB_TIMEOUT_MS });
  await page.click('#analyses-body button:text("Chart")');
  await page.waitForSelector('#analysis-figure:not([hidden]) svg', { timeout: 15_000 });
  const [analysis] = (await adminApi('/admin/v1/analyses')).data;
  const { report } = await adminApi(`/admin/v1/analyses/${analysis.id}`);
  assert.deepEqual(report.blocks.map((b) => b.block), ['down.0.0', 'mid', 'up.1.0.attn'], 'the units asked for');
  assert.equal(await page.inputValue('#analysis-guidance'), '', 'no guidance typed in by default');
  assert.equal(analysis.request.guidance, 4, "no guidance sent: the model's own, 4 for one that records none");
  for (const series of ['content', 'motion', 'direction', 'params', 'latency']) {
    assert.equal(await page.locator(`#analysis-chart rect.series-${series}`).count(), report.blocks.length + 1,
      `one ${series} bar per block, and the legend's`);
  }
  const labels = await page.$$eval('#analysis-chart text', (nodes) => nodes.map((n) => n.textContent));
  for (const block of report.blocks) assert.ok(labels.includes(block.block), `${block.block} is labelled`);
  assert.match(await page.textContent('#analysis-verdict'), /(holds|does not hold) here/);
  await screenshot('admin-analysis');

  await page.selectOption('#distill-plan', 'remove');
  await page.fill('#distill-remove', 'mid');
  /* two GPUs on a CPU server: refused, and the page says why */
  await page.fill('#distill-gpus', '2');
  await page.fill('#distill-config', '{"steps": 40, "warmup_steps": 1, "grad_accum": 2}');
  await page.click('#distillation-form button[type="submit"]');
  await page.waitForSelector('#admin-error:not([hidden])', { timeout: 15_000 });
  assert.match(await page.textContent('#admin-error'), /gpus.*cpu/i);
  assert.equal((await adminApi('/admin/v1/distillations')).data.length, 0);
  pageProblems = []; /* the refused request is expected */
  await page.fill('#distill-gpus', '1');
  await page.fill('#distill-config', '{"steps": 40, "warmup_steps": 1, "batch": 4, "loader_threads": 1}');
  await page.click('#distillation-form button[type="submit"]');
  await page.waitForSelector('#distillations-body tr', { timeout: 15_000 });
  const [run] = (await adminApi('/admin/v1/distillations')).data;
  assert.equal(run.request.gpus, 1);
  const deadline = Date.now() + JOB_TIMEOUT_MS;
  let state = run;
  while (!['completed', 'failed', 'cancelled'].includes(state.status) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    state = await adminApi(`/admin/v1/distillations/${run.id}`);
  }
  if (state.status === 'failed') { /* an engine that cannot distil yet: the page says so */
    await page.waitForFunction((message) => document.querySelector('#distillations-body').textContent.includes(message),
      state.error.message, { timeout: 15_000 });
    return;
  }
  assert.equal(state.status, 'completed');
  for (const term of ['task', 'icd', 'mca', 'disc']) {
    await page.waitForSelector(`#curves-chart polyline.series-${term}`, { timeout: 15_000 });
  }
  const activate = page.locator('#models-body tr', { hasText: state.model }).locator('button:text("Activate")');
  await activate.waitFor({ timeout: 15_000 });
  await screenshot('admin-distillation');
  await activate.click();
  await page.waitForFunction((model) => {
    const row = [...document.querySelectorAll('#models-body tr')].find((r) => r.cells[0].textContent === model);
    return row && row.cells[2].textContent.startsWith('active') && !row.querySelector('button');
  }, state.model, { timeout: 30_000 });
  const models = (await (await fetch(`${daemon.url}/v1/models`)).json()).data;
  assert.deepEqual(models.filter((m) => m.active).map((m) => m.id), [state.model]);
  assert.deepEqual(pageProblems, []);
});
