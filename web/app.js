/* app.js: the behaviour of vdmini's page. Reads the models and their limits, sends the form to
 * POST /v1/videos, follows the job's server-sent events (or polls), plays the finished video,
 * cancels, and keeps the list of recent videos. Plain browser JavaScript, no framework. */
'use strict';

const FPS = 8;                 /* frames per second asked for; seconds = frames / FPS */
const DEFAULT_SIZE = '128x128';
const RECENT_PAGE_SIZE = 12;
const POLL_INTERVAL_MS = 1000;
const RECENT_REFRESH_MS = 3000;
const KEY_STORAGE = 'vdmini.apiKey';
const TERMINAL_STATUSES = new Set(['completed', 'failed', 'cancelled']);
const STATUS_WORDS = {
  queued: 'Queued',
  in_progress: 'Generating',
  completed: 'Done',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

const el = (id) => document.getElementById(id);

/* ---------- talking to the server ---------- */

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status; /* the HTTP status, 0 when the server could not be reached */
  }
}

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || '';
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/* The server's error body is {"error": {"message", "type", "param", "code"}}; anything else is
 * described by the HTTP status. */
async function errorFromResponse(response) {
  let message = '';
  try {
    message = JSON.parse(await response.text())?.error?.message || '';
  } catch {
    /* not JSON: fall back to the status line below */
  }
  if (!message) message = `The server answered ${response.status} ${response.statusText}`.trim();
  return new ApiError(message, response.status);
}

async function apiFetch(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...authHeaders(), ...options.headers } });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(`Cannot reach the server (${error.message}).`, 0);
  }
  if (response.status === 401) el('api-key-panel').open = true; /* point at where a key goes */
  if (!response.ok) throw await errorFromResponse(response);
  return response;
}

async function apiJson(path, options) {
  return (await apiFetch(path, options)).json();
}

/* <video>, <img> and download links cannot send an Authorization header, so when a key is set
 * the bytes are fetched here and handed to them as a blob: URL, which the caller revokes. */
async function mediaUrl(path) {
  if (!apiKey()) return { url: path, revoke() {} };
  const blob = await (await apiFetch(path)).blob();
  const url = URL.createObjectURL(blob);
  return { url, revoke: () => URL.revokeObjectURL(url) };
}

function contentPath(id, variant) {
  const path = `/v1/videos/${encodeURIComponent(id)}/content`;
  return variant ? `${path}?variant=${variant}` : path;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/* ---------- small helpers ---------- */

function showText(node, text) {
  node.textContent = text || '';
  node.hidden = !text;
}

/* unknown_words may come as a list or as one space-separated string. */
function unknownWords(video) {
  const words = video?.unknown_words;
  if (Array.isArray(words)) return words.filter(Boolean);
  if (typeof words === 'string') return words.split(/\s+/).filter(Boolean);
  return [];
}

function unknownWordsWarning(video) {
  const words = unknownWords(video);
  if (!words.length) return '';
  return `Not in the model's vocabulary, so it cannot follow them: ${words.join(', ')}.`;
}

function errorMessage(video) {
  const error = video?.error;
  if (!error) return 'The video could not be made.';
  if (typeof error === 'string') return error;
  return error.message || error.code || 'The video could not be made.';
}

function statusLine(video) {
  const word = STATUS_WORDS[video.status] || video.status || 'Unknown';
  if (video.status === 'queued' && Number.isInteger(video.queue_position)) {
    return `${word}, position ${video.queue_position + 1} in the queue`;
  }
  if (video.status === 'in_progress') {
    if (video.step && video.total) return `${word}: step ${video.step} of ${video.total}`;
    return `${word}: ${Math.round(video.progress || 0)}%`;
  }
  return word;
}

const relativeTime = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

function whenText(unixSeconds) {
  if (!unixSeconds) return '';
  const seconds = Math.round(unixSeconds - Date.now() / 1000);
  const steps = [[60, 'second'], [60, 'minute'], [24, 'hour'], [Infinity, 'day']];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(value) < size) return relativeTime.format(Math.round(value), unit);
    value /= size;
  }
  return '';
}

/* ---------- models and their limits ---------- */

let models = [];

function sizeText(size) {
  return size.replace('x', '×');
}

/* Sizes come either as a list (strings "WxH", {width, height} or [w, h]) or as maxima with a
 * multiple; the exact field names vary, so each is read defensively. */
function sizesFromLimits(limits) {
  if (Array.isArray(limits.sizes) && limits.sizes.length) {
    return limits.sizes.map((size) => {
      if (typeof size === 'string') return size;
      if (Array.isArray(size)) return `${size[0]}x${size[1]}`;
      return `${size.width}x${size.height}`;
    }).filter((size) => /^\d+x\d+$/.test(size));
  }
  const maxWidth = limits.max_width ?? limits.width?.max ?? limits.max_size;
  const maxHeight = limits.max_height ?? limits.height?.max ?? limits.max_size;
  if (!maxWidth || !maxHeight) return [];
  const multiple = limits.multiple_of ?? limits.size_multiple_of ?? 8;
  const minSide = limits.min_width ?? limits.min_size ?? multiple;
  const sides = [32, 48, 64, 96, 128, 160, 192, 256, 384, 512];
  return sides
    .filter((side) => side >= minSide && side % multiple === 0)
    .filter((side) => side <= maxWidth && side <= maxHeight)
    .map((side) => `${side}x${side}`);
}

function setSizeOptions(sizes) {
  if (!sizes.length) return;
  const select = el('size');
  const previous = select.value || DEFAULT_SIZE;
  select.replaceChildren(...sizes.map((size) => new Option(sizeText(size), size)));
  select.value = sizes.includes(previous) ? previous
    : sizes.includes(DEFAULT_SIZE) ? DEFAULT_SIZE : sizes[0];
}

function setMaximum(input, maximum) {
  if (Number.isFinite(maximum) && maximum > 0) {
    input.max = String(maximum);
    if (Number(input.value) > maximum) input.value = String(maximum);
  } else {
    input.removeAttribute('max');
  }
}

/* The vocabulary is a list of words or an object of named lists (colours, shapes, ...). */
function vocabularyText(vocabulary) {
  const isWord = (word) => !/^<.*>$/.test(word); /* leaves out markers such as <pad>, <unk> */
  if (Array.isArray(vocabulary)) return vocabulary.filter(isWord).join(', ');
  if (vocabulary && typeof vocabulary === 'object') {
    const listed = (words) => (Array.isArray(words) ? words.filter(isWord).join(', ') : words);
    return Object.entries(vocabulary)
      .map(([group, words]) => `${group}: ${listed(words)}`)
      .join('; ');
  }
  return '';
}

const SAMPLER_NAMES = { ddim: 'DDIM', euler: 'Euler' };
let defaultSamplerName = '';

function setSamplerOptions(samplers, defaultSampler) {
  if (!Array.isArray(samplers) || !samplers.length) return;
  defaultSamplerName = defaultSampler || '';
  const byDefault = defaultSampler
    ? `server default (${SAMPLER_NAMES[defaultSampler] || defaultSampler})` : 'server default';
  el('sampler').replaceChildren(new Option(byDefault, ''),
    ...samplers.map((name) => new Option(SAMPLER_NAMES[name] || name, name)));
}

/* eta only for DDIM: the server refuses fresh noise with Euler */
function updateEtaField() {
  const euler = (el('sampler').value || defaultSamplerName) === 'euler';
  el('eta-field').hidden = euler;
  el('eta').disabled = euler;
}

function applyModel(model) {
  const limits = model?.limits || {};
  setSizeOptions(sizesFromLimits(limits));
  setMaximum(el('frames'), limits.max_frames ?? limits.frames?.max);
  setMaximum(el('steps'), limits.max_steps ?? limits.steps?.max);
  setSamplerOptions(limits.samplers, limits.default_sampler);
  const guidance = limits.default_guidance_scale ?? limits.default_guidance;
  el('guidance').placeholder = guidance !== undefined ? `default ${guidance}` : 'server default';
  /* a guide scale only for a model with a guide: the server refuses one for the others */
  const guided = model?.guide === true;
  el('guide-scale-field').hidden = !guided;
  el('guide-scale').disabled = !guided;
  const guideScale = limits.default_guide_scale;
  el('guide-scale').placeholder = guideScale !== undefined ? `default ${guideScale}` : 'server default';
  const eta = limits.default_eta;
  el('eta').placeholder = eta !== undefined ? `default ${eta}` : 'server default';
  updateEtaField();
  updateFramesHint();
  const words = vocabularyText(model?.vocabulary);
  el('vocabulary-words').textContent = words;
  el('vocabulary-hint').hidden = !words;
}

async function loadModels() {
  try {
    const list = await apiJson('/v1/models');
    models = Array.isArray(list.data) ? list.data : [];
  } catch {
    models = []; /* the form still works with its built-in defaults */
  }
  const select = el('model');
  select.replaceChildren(...models.map((model) => new Option(model.id, model.id)));
  const active = models.find((model) => model.active) || models[0];
  if (active) select.value = active.id;
  el('model-field').hidden = models.length < 2;
  applyModel(active);
}

function selectedModel() {
  return models.find((model) => model.id === el('model').value);
}

function updateFramesHint() {
  const frames = Number(el('frames').value);
  const maximum = el('frames').max ? `, at most ${el('frames').max}` : '';
  el('frames-hint').textContent = frames > 0
    ? `${+(frames / FPS).toFixed(3)} s at ${FPS} fps${maximum}` : '';
}

/* ---------- the form ---------- */

let imagePreview = null;

function onImageChosen() {
  imagePreview?.revoke();
  imagePreview = null;
  const file = el('image').files[0];
  el('image-preview').hidden = !file;
  if (!file) return;
  const url = URL.createObjectURL(file);
  imagePreview = { revoke: () => URL.revokeObjectURL(url) };
  el('image-preview-img').src = url;
}

function clearImage() {
  el('image').value = '';
  onImageChosen();
}

function requestBody() {
  const body = new FormData();
  body.append('prompt', el('prompt').value.trim());
  if (el('model').value) body.append('model', el('model').value);
  body.append('size', el('size').value);
  const frames = Number(el('frames').value);
  body.append('seconds', String(frames / FPS));
  body.append('fps', String(FPS));
  body.append('num_inference_steps', el('steps').value);
  const optional = [['seed', 'seed'], ['guidance', 'guidance_scale'], ['guide-scale', 'guide_scale'],
    ['sampler', 'sampler'], ['eta', 'eta']];
  for (const [id, field] of optional) {
    const value = el(id).value.trim();
    if (value !== '' && !el(id).disabled) body.append(field, value);
  }
  const image = el('image').files[0];
  if (image) body.append('input_reference', image, image.name);
  return body;
}

async function onSubmit(event) {
  event.preventDefault();
  showText(el('form-error'), '');
  const button = el('generate');
  button.disabled = true;
  button.textContent = 'Submitting…';
  try {
    const video = await apiJson('/v1/videos', { method: 'POST', body: requestBody() });
    showJob(video);
    refreshRecent();
  } catch (error) {
    showText(el('form-error'), error.message);
  } finally {
    button.disabled = false;
    button.textContent = 'Generate';
  }
}

/* ---------- the current job ---------- */

let watch = null;        /* { video, controller } of the job shown in the panel */
let resultMedia = [];    /* blob URLs held by the result, revoked when it changes */

function releaseResultMedia() {
  resultMedia.forEach((media) => media.revoke());
  resultMedia = [];
}

function renderJob(video) {
  el('job-prompt').textContent = video.prompt ? `“${video.prompt}”` : '(no prompt)';
  el('job-status').textContent = statusLine(video);
  const progress = el('job-progress');
  const percent = Math.max(0, Math.min(100, video.progress || 0));
  progress.value = video.status === 'completed' ? 100 : percent;
  progress.setAttribute('aria-valuetext', `${Math.round(progress.value)}%`);
  progress.dataset.status = video.status;
  el('job-cancel').hidden = TERMINAL_STATUSES.has(video.status);
  showText(el('job-warning'), unknownWordsWarning(video));
  showText(el('job-error'), video.status === 'failed' ? errorMessage(video) : '');
}

function showJob(video) {
  watch?.controller.abort();
  releaseResultMedia();
  const player = el('job-video');
  player.removeAttribute('src');
  player.removeAttribute('poster');
  player.load();
  el('job-result').hidden = true;
  el('job-panel').hidden = false;
  watch = { video: { ...video }, controller: new AbortController() };
  renderJob(watch.video);
  if (TERMINAL_STATUSES.has(video.status)) finishJob(watch);
  else followJob(watch);
}

function updateJob(current, fields) {
  Object.assign(current.video, fields);
  if (fields.step && fields.total && fields.progress === undefined) {
    current.video.progress = (100 * fields.step) / fields.total;
  }
  if (current === watch) renderJob(current.video);
}

/* Progress comes from GET /v1/videos/{id}/events. EventSource cannot send an Authorization
 * header, so the stream is read with fetch(), which can, and parsed here; this works the same
 * with or without a key. If streaming is unavailable or the stream ends before the job does, the
 * page falls back to polling GET /v1/videos/{id} once a second. */
async function followJob(current) {
  const { signal } = current.controller;
  try {
    await streamEvents(current);
  } catch {
    /* streaming failed: polling below takes over */
  }
  if (signal.aborted) return;
  if (!TERMINAL_STATUSES.has(current.video.status)) await pollJob(current);
  if (!signal.aborted && TERMINAL_STATUSES.has(current.video.status)) finishJob(current);
}

function parseEventBlock(block) {
  let type = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
  }
  return { type, data: data.join('\n') };
}

function onJobEvent(current, type, data) {
  let fields = {};
  try {
    fields = JSON.parse(data) || {};
  } catch {
    return;
  }
  if (Object.hasOwn(STATUS_WORDS, type)) fields.status = type;
  else if (type === 'progress' && !TERMINAL_STATUSES.has(current.video.status)) {
    fields.status = 'in_progress';
  }
  updateJob(current, fields);
}

async function streamEvents(current) {
  const id = encodeURIComponent(current.video.id);
  const response = await apiFetch(`/v1/videos/${id}/events`, {
    headers: { Accept: 'text/event-stream' },
    signal: current.controller.signal,
  });
  if (!response.body) throw new Error('no streaming body');
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  while (!TERMINAL_STATUSES.has(current.video.status)) {
    const { value, done } = await reader.read();
    if (done) break;
    /* A "\r" at the end may be the first half of "\r\n": keep it until the next chunk. */
    buffer += value;
    const settled = buffer.endsWith('\r') ? buffer.length - 1 : buffer.length;
    let text = buffer.slice(0, settled).replace(/\r\n?/g, '\n');
    buffer = buffer.slice(settled);
    let end;
    while ((end = text.indexOf('\n\n')) >= 0) {
      const { type, data } = parseEventBlock(text.slice(0, end));
      text = text.slice(end + 2);
      if (data) onJobEvent(current, type, data);
    }
    buffer = text + buffer;
  }
  reader.cancel().catch(() => {});
}

async function pollJob(current) {
  const { signal } = current.controller;
  const path = `/v1/videos/${encodeURIComponent(current.video.id)}`;
  while (!signal.aborted && !TERMINAL_STATUSES.has(current.video.status)) {
    try {
      updateJob(current, await apiJson(path, { signal }));
    } catch (error) {
      if (signal.aborted) return;
      const passing = error.status === 0 || error.status === 429 || error.status >= 500;
      if (!passing) { /* e.g. the video is gone or the key is refused: asking again won't help */
        if (current === watch) showText(el('job-error'), error.message);
        return;
      }
    }
    if (!TERMINAL_STATUSES.has(current.video.status)) await sleep(POLL_INTERVAL_MS, signal);
  }
}

async function finishJob(current) {
  /* Events carry only what changed; the full object has the final times, size and seed. */
  try {
    const path = `/v1/videos/${encodeURIComponent(current.video.id)}`;
    Object.assign(current.video, await apiJson(path, { signal: current.controller.signal }));
  } catch {
    /* keep what the events said */
  }
  const { video } = current;
  if (current === watch) renderJob(video);
  refreshRecent();
  if (video.status !== 'completed' || current !== watch) return;
  try {
    const [clip, thumbnail] = await Promise.all([
      mediaUrl(contentPath(video.id)),
      mediaUrl(contentPath(video.id, 'thumbnail')).catch(() => null),
    ]);
    if (current !== watch) {
      clip.revoke();
      thumbnail?.revoke();
      return;
    }
    resultMedia.push(clip);
    if (thumbnail) resultMedia.push(thumbnail);
    showResult(video, clip.url, thumbnail?.url);
  } catch (error) {
    showText(el('job-error'), `The video is done but could not be loaded: ${error.message}`);
  }
}

function showResult(video, clipUrl, thumbnailUrl) {
  const player = el('job-video');
  const note = el('job-playback-note');
  showText(note, '');
  if (!player.canPlayType('video/mp4; codecs="avc1.64001f"')) {
    showText(note, 'This browser cannot play H.264 MP4 video; use the download link.');
  }
  const [width, height] = (video.size || '').split('x').map(Number);
  player.style.aspectRatio = width && height ? `${width} / ${height}` : '';
  if (thumbnailUrl) player.poster = thumbnailUrl;
  player.src = clipUrl;
  const download = el('job-download');
  download.href = clipUrl;
  download.download = `${video.id}.mp4`;
  const details = [
    video.size && sizeText(video.size),
    video.seconds && `${video.seconds} s`,
    video.seed !== undefined && video.seed !== null && `seed ${video.seed}`,
  ].filter(Boolean);
  el('job-details').textContent = details.join(' · ');
  el('job-result').hidden = false;
}

function onPlaybackError() {
  if (!el('job-video').getAttribute('src')) return;
  showText(el('job-playback-note'),
    'This browser could not play the video; the download link still has it.');
}

async function cancelJob() {
  if (!watch) return;
  const current = watch;
  el('job-cancel').disabled = true;
  try {
    /* The events stream (or polling) then reports the job cancelled. */
    await apiFetch(`/v1/videos/${encodeURIComponent(current.video.id)}`, { method: 'DELETE' });
  } catch (error) {
    showText(el('job-error'), error.message);
  } finally {
    el('job-cancel').disabled = false;
  }
}

/* ---------- recent videos ---------- */

let recentAfter = null;
let recentMedia = [];
let recentRefreshTimer = 0;

function recentItem(video) {
  const item = document.createElement('li');
  item.className = 'recent-item';
  item.dataset.id = video.id;
  item.dataset.status = video.status;

  const open = document.createElement('button');
  open.type = 'button';
  open.className = 'recent-open';
  const statusWord = STATUS_WORDS[video.status] || video.status;
  open.setAttribute('aria-label', `Show video: ${video.prompt || 'no prompt'} (${statusWord})`);
  const thumb = document.createElement('div');
  thumb.className = 'recent-thumb';
  if (video.status === 'completed') {
    const image = document.createElement('img');
    image.alt = '';
    thumb.append(image);
    mediaUrl(contentPath(video.id, 'thumbnail')).then((media) => {
      recentMedia.push(media);
      image.src = media.url;
    }).catch(() => image.remove());
  } else {
    thumb.textContent = statusWord;
  }
  const prompt = document.createElement('span');
  prompt.className = 'recent-prompt';
  prompt.textContent = video.prompt || '(no prompt)';
  open.append(thumb, prompt);
  open.addEventListener('click', () => openRecent(video.id));

  const meta = document.createElement('p');
  meta.className = 'recent-meta';
  const badge = document.createElement('span');
  badge.className = `badge badge-${video.status}`;
  badge.textContent = statusWord;
  const when = document.createElement('span');
  when.className = 'muted';
  when.textContent = [video.size && sizeText(video.size), whenText(video.created_at)]
    .filter(Boolean).join(' · ');
  meta.append(badge, ' ', when);
  if (video.status === 'failed') {
    const reason = document.createElement('span');
    reason.className = 'recent-error';
    reason.textContent = errorMessage(video);
    meta.append(reason);
  }

  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'recent-delete';
  const active = !TERMINAL_STATUSES.has(video.status);
  remove.textContent = active ? 'Cancel' : 'Delete';
  remove.setAttribute('aria-label', `${remove.textContent} video: ${video.prompt || 'no prompt'}`);
  remove.addEventListener('click', () => deleteRecent(video.id, remove));

  item.append(open, meta, remove);
  return item;
}

async function loadRecent(after) {
  const query = new URLSearchParams({ limit: String(RECENT_PAGE_SIZE), order: 'desc' });
  if (after) query.set('after', after);
  const list = await apiJson(`/v1/videos?${query}`);
  const videos = Array.isArray(list.data) ? list.data : [];
  recentAfter = list.last_id || videos.at(-1)?.id || null;
  el('recent-more').hidden = !list.has_more;
  return videos;
}

async function refreshRecent() {
  clearTimeout(recentRefreshTimer);
  try {
    const videos = await loadRecent(null);
    recentMedia.forEach((media) => media.revoke());
    recentMedia = [];
    el('recent-list').replaceChildren(...videos.map(recentItem));
    showText(el('recent-error'), '');
    el('recent-empty').hidden = videos.length > 0;
    if (videos.some((video) => !TERMINAL_STATUSES.has(video.status))) {
      recentRefreshTimer = setTimeout(refreshRecent, RECENT_REFRESH_MS);
    }
  } catch (error) {
    showText(el('recent-error'), `Could not list videos: ${error.message}`);
  }
}

async function showOlder() {
  try {
    const videos = await loadRecent(recentAfter);
    el('recent-list').append(...videos.map(recentItem));
  } catch (error) {
    showText(el('recent-error'), `Could not list videos: ${error.message}`);
  }
}

async function openRecent(id) {
  try {
    showJob(await apiJson(`/v1/videos/${encodeURIComponent(id)}`));
    el('job-panel').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
  } catch (error) {
    showText(el('recent-error'), error.message);
  }
}

async function deleteRecent(id, button) {
  button.disabled = true;
  try {
    await apiFetch(`/v1/videos/${encodeURIComponent(id)}`, { method: 'DELETE' });
    if (watch?.video.id === id && TERMINAL_STATUSES.has(watch.video.status)) {
      watch.controller.abort();
      watch = null;
      releaseResultMedia();
      el('job-panel').hidden = true;
    }
  } catch (error) {
    showText(el('recent-error'), error.message);
  }
  button.disabled = false;
  refreshRecent();
}

/* ---------- the API key ---------- */

function showKeyState() {
  el('api-key-state').textContent = apiKey() ? '(set)' : '(not set)';
}

function saveKey(event) {
  event.preventDefault();
  const key = el('api-key').value.trim();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
  showKeyState();
  loadModels();
  refreshRecent();
}

function forgetKey() {
  el('api-key').value = '';
  localStorage.removeItem(KEY_STORAGE);
  showKeyState();
  refreshRecent();
}

/* ---------- start ---------- */

function start() {
  el('api-key').value = apiKey();
  showKeyState();
  el('api-key-form').addEventListener('submit', saveKey);
  el('api-key-clear').addEventListener('click', forgetKey);
  el('create-form').addEventListener('submit', onSubmit);
  el('image').addEventListener('change', onImageChosen);
  el('image-clear').addEventListener('click', clearImage);
  el('frames').addEventListener('input', updateFramesHint);
  el('model').addEventListener('change', () => applyModel(selectedModel()));
  el('sampler').addEventListener('change', updateEtaField);
  el('job-cancel').addEventListener('click', cancelJob);
  el('job-video').addEventListener('error', onPlaybackError);
  el('recent-refresh').addEventListener('click', refreshRecent);
  el('recent-more').addEventListener('click', showOlder);
  updateFramesHint();
  loadModels();
  refreshRecent();
}

start();
