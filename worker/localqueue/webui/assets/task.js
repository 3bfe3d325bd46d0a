// The task page: status and runs (refreshed while the task is unresolved),
// actions, the log (streamed from the live log while the run runs, then
// the whole backing log), phase timings, artifacts and the definition.
import {
  apiBase, el, stateBadge, fmtTime, fmtBytes, escapeSegments, get, call,
  authorization, signedURL, toYAML, showError,
} from './common.js';

const taskId = decodeURIComponent(location.pathname.split('/').pop());
const $ = (id) => document.getElementById(id);
const errBox = $('error');
const logPre = $('log');
const logSource = $('log-source');

let definition = null;
let status = null;
// logRun is the run whose log is shown; logMode what was shown of it:
// 'live' while streaming, 'final' once the whole log was read.
let logRun = -1;
let logMode = '';
let streamAbort = null;
let artifactsShown = '';

const resolvedStates = ['completed', 'failed', 'exception'];

function logName() {
  const p = definition && definition.payload;
  return (p && typeof p.log === 'string' && p.log) || 'public/logs/live.log';
}

function artifactURL(runId, name) {
  return `${apiBase}/task/${encodeURIComponent(taskId)}/runs/${runId}/artifacts/${escapeSegments(name)}`;
}

// fetchArtifact fetches an artifact, signed when it is not public.
async function fetchArtifact(runId, name, signal) {
  const url = artifactURL(runId, name);
  const headers = {};
  if (!name.startsWith('public/')) headers.Authorization = await authorization('GET', url, 'Reading a private log needs credentials.');
  return fetch(url, { headers, signal });
}

function renderStatus() {
  const s = status;
  $('state').replaceChildren(stateBadge(s.state));
  $('schedule').disabled = s.state !== 'unscheduled';
  $('cancel').disabled = !['unscheduled', 'pending', 'running'].includes(s.state);
  $('rerun').disabled = !resolvedStates.includes(s.state);
  $('runs').tBodies[0].replaceChildren(...s.runs.map((r) => el('tr', { 'data-run': r.runId },
    el('td', {}, r.runId), el('td', {}, stateBadge(r.state)), el('td', {}, r.reasonCreated),
    el('td', {}, r.reasonResolved || ''), el('td', { class: 'mono' }, r.workerId ? `${r.workerGroup}/${r.workerId}` : ''),
    el('td', {}, fmtTime(r.scheduled)), el('td', {}, fmtTime(r.started)), el('td', {}, fmtTime(r.resolved)))));
  if (!s.runs.length) $('runs').tBodies[0].append(el('tr', {}, el('td', { colspan: 8, class: 'muted' }, 'No runs yet.')));
}

function appendLog(text) {
  const atEnd = logPre.scrollTop + logPre.clientHeight >= logPre.scrollHeight - 8;
  logPre.append(document.createTextNode(text));
  if (atEnd) logPre.scrollTop = logPre.scrollHeight;
}

// streamLive follows the live log of a running run until it ends.
async function streamLive(runId) {
  logRun = runId;
  logMode = 'live';
  logPre.replaceChildren();
  logSource.textContent = `run ${runId}, live`;
  streamAbort = new AbortController();
  try {
    const r = await fetchArtifact(runId, logName(), streamAbort.signal);
    if (!r.ok) throw new Error(`live log: HTTP ${r.status}`);
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      appendLog(dec.decode(value, { stream: true }));
    }
    appendLog(dec.decode());
  } catch (e) {
    if (e.name !== 'AbortError') logSource.textContent = `run ${runId}, live log unavailable (${e.message}); the whole log follows when the run ends`;
  } finally {
    streamAbort = null;
    if (logMode === 'live') logMode = 'ended';
  }
}

// loadFinal reads the whole log of a resolved run (the live log artifact
// is then a link to the backing log).
async function loadFinal(runId) {
  logRun = runId;
  logMode = 'final';
  try {
    const r = await fetchArtifact(runId, logName());
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const text = await r.text();
    logPre.replaceChildren(document.createTextNode(text));
    logSource.textContent = `run ${runId}, backing log`;
    renderTimings(runId, text);
  } catch (e) {
    logSource.textContent = `run ${runId}: no log (${e.message})`;
  }
}

function renderTimings(runId, text) {
  const line = text.split('\n').find((l) => l.includes('Task timings (ms): '));
  const run = status.runs[runId];
  const rows = [];
  if (run && run.started && run.scheduled) rows.push(['queued', new Date(run.started) - new Date(run.scheduled)]);
  if (line) {
    for (const kv of line.slice(line.indexOf('Task timings (ms): ') + 19).trim().split(/\s+/)) {
      const [k, v] = kv.split('=');
      if (k && v !== undefined) rows.push([k, Number(v)]);
    }
  }
  if (!line) {
    $('timings').textContent = 'No timings line in this run\'s log.';
    return;
  }
  $('timings').replaceChildren(el('table', { id: 'timings-table' },
    el('thead', {}, el('tr', {}, el('th', {}, 'phase'), el('th', {}, 'ms'))),
    el('tbody', {}, rows.map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', {}, isNaN(v) ? '' : v.toFixed(1)))))));
}

async function renderArtifacts(runId) {
  let data;
  try {
    data = await get(`/task/${encodeURIComponent(taskId)}/runs/${runId}/artifacts`);
  } catch (e) {
    return;
  }
  const key = runId + JSON.stringify(data.artifacts);
  if (key === artifactsShown) return;
  artifactsShown = key;
  $('artifacts').tBodies[0].replaceChildren(...data.artifacts.map((a) => {
    const url = artifactURL(runId, a.name);
    const priv = !a.name.startsWith('public/');
    const link = el('a', { href: url, 'data-artifact': a.name, target: priv ? null : '_blank', rel: 'noopener' }, a.name);
    if (priv) {
      link.addEventListener('click', async (ev) => {
        ev.preventDefault();
        try {
          location.href = await signedURL(url, 'A private artifact needs credentials.');
        } catch (e) { showError(errBox, e); }
      });
    }
    const size = el('td', { class: 'size' }, fmtBytes(a.contentLength));
    if ((a.contentLength === undefined || a.contentLength === null) && !priv && a.storageType !== 'reference' && a.storageType !== 'error') {
      // The queue records no size for these: ask the storage (the size as
      // stored, i.e. compressed when the artifact is gzip-encoded).
      // Only the headers are read: the download is aborted at once.
      const ac = new AbortController();
      fetch(url, { signal: ac.signal }).then((r) => {
        const n = r.headers.get('Content-Length');
        const gz = (r.headers.get('Content-Encoding') || '').includes('gzip');
        ac.abort();
        if (r.ok && n !== null) size.textContent = fmtBytes(Number(n)) + (gz ? ' (gzip)' : '');
      }).catch(() => {});
    }
    return el('tr', {},
      el('td', {}, link, priv ? el('span', { class: 'muted' }, ' (private: signed URL)') : null),
      el('td', {}, a.contentType || ''), size,
      el('td', {}, a.storageType), el('td', {}, fmtTime(a.expires)));
  }));
  if (!data.artifacts.length) $('artifacts').tBodies[0].append(el('tr', {}, el('td', { colspan: 5, class: 'muted' }, 'No artifacts.')));
}

async function refresh() {
  try {
    status = (await get(`/task/${encodeURIComponent(taskId)}/status`)).status;
    errBox.replaceChildren();
  } catch (e) {
    showError(errBox, e);
    return;
  }
  renderStatus();
  const last = status.runs.length - 1;
  if (last < 0) return;
  const run = status.runs[last];
  if (run.state === 'running' && (logRun !== last || logMode === '')) {
    if (streamAbort) streamAbort.abort();
    streamLive(last);
  } else if (resolvedStates.includes(run.state) && !(logRun === last && logMode === 'final') && logMode !== 'live') {
    loadFinal(last);
  } else if (run.state === 'pending' && logRun !== last) {
    logSource.textContent = `run ${last} is waiting for a worker`;
  }
  if (run.state !== 'pending') renderArtifacts(last);
}

function action(name, path) {
  $(name).addEventListener('click', async () => {
    const result = $('action-result');
    result.textContent = '';
    try {
      await call('POST', `/task/${encodeURIComponent(taskId)}/${path}`, undefined, `To ${name} the task, enter credentials.`);
      result.textContent = `${name}: done`;
    } catch (e) {
      showError(result, e);
    }
    refresh();
  });
}

function showDefinition(form) {
  $('tab-yaml').setAttribute('aria-selected', String(form === 'yaml'));
  $('tab-json').setAttribute('aria-selected', String(form === 'json'));
  $('definition').textContent = form === 'yaml' ? toYAML(definition) : JSON.stringify(definition, null, 2);
}

async function start() {
  action('schedule', 'schedule');
  action('cancel', 'cancel');
  action('rerun', 'rerun');
  $('tab-yaml').addEventListener('click', () => showDefinition('yaml'));
  $('tab-json').addEventListener('click', () => showDefinition('json'));
  try {
    definition = await get(`/task/${encodeURIComponent(taskId)}`);
  } catch (e) {
    showError(errBox, e);
    return;
  }
  document.title = `${definition.metadata.name} · docker-worker`;
  $('title').textContent = definition.metadata.name;
  $('title').append(el('div', { class: 'muted mono', id: 'task-id' }, taskId));
  showDefinition('yaml');
  await refresh();
  setInterval(() => {
    if (document.hidden) return;
    if (status && resolvedStates.includes(status.state) && logMode === 'final') return;
    refresh();
  }, 1500);
}

start();
