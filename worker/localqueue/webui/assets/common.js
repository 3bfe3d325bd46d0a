// Shared code of the docker-worker web pages: building the page (always
// with text nodes: task-provided text is never parsed as markup), calling
// the queue API, and signing requests.
//
// Signing: with credentials the user entered (kept in this tab's session
// storage) the page signs each request itself with Hawk (WebCrypto HMAC,
// which browsers offer on https and on localhost/127.0.0.1 only); when
// `docker-worker dev --ui-admin` is running, the server's same-origin
// /ui/api/sign endpoint signs for the local admin client instead.

export const base = document.querySelector('meta[name="dw-base"]').content;
export const origin = location.origin + base;
export const apiBase = origin + '/api/queue/v1';

// el builds an element; children that are strings become text nodes.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function stateBadge(state) {
  return el('span', { class: 'state ' + state, 'data-state': state }, state);
}

export function fmtTime(s) {
  if (!s) return '';
  const d = new Date(s);
  return isNaN(d) ? s : d.toLocaleString();
}

export function fmtBytes(n) {
  if (n === undefined || n === null) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + units[i];
}

// escapeSegments path-escapes each segment of a name that may hold slashes.
export function escapeSegments(name) {
  return name.split('/').map(encodeURIComponent).join('/');
}

let serverConfig;
export async function config() {
  if (!serverConfig) {
    const r = await fetch(origin + '/ui/api/config');
    serverConfig = await r.json();
  }
  return serverConfig;
}

const credsKey = 'docker-worker-credentials';

export function storedCredentials() {
  try { return JSON.parse(sessionStorage.getItem(credsKey)); } catch { return null; }
}

export function forgetCredentials() {
  sessionStorage.removeItem(credsKey);
}

// askCredentials shows the credentials dialog once and resolves with what
// was entered (kept in session storage), or null when cancelled.
export function askCredentials(why) {
  return new Promise((resolve) => {
    const id = el('input', { name: 'clientId', autocomplete: 'username', required: true });
    const token = el('input', { name: 'accessToken', type: 'password', autocomplete: 'current-password', required: true });
    const note = subtleAvailable() ? null :
      el('p', { class: 'error' }, 'This browser signs requests only on https or localhost; open the page at http://127.0.0.1 or start `docker-worker dev --ui-admin`.');
    const form = el('form', { method: 'dialog' },
      el('h2', {}, 'Credentials'),
      el('p', { class: 'muted' }, why || 'This action needs Taskcluster credentials. They are kept in this tab only (session storage).'),
      note,
      el('label', {}, 'Client ID', id),
      el('label', {}, 'Access token', token),
      el('div', { class: 'bar' },
        el('button', { class: 'primary', value: 'ok', id: 'creds-ok' }, 'Use these credentials'),
        el('button', { value: 'cancel', formnovalidate: true }, 'Cancel')));
    const dlg = el('dialog', { id: 'creds-dialog' }, form);
    document.body.append(dlg);
    dlg.addEventListener('close', () => {
      dlg.remove();
      if (dlg.returnValue !== 'ok') return resolve(null);
      const c = { clientId: id.value.trim(), accessToken: token.value.trim() };
      sessionStorage.setItem(credsKey, JSON.stringify(c));
      renderWho();
      resolve(c);
    });
    dlg.showModal();
  });
}

function subtleAvailable() {
  return !!(window.crypto && crypto.subtle);
}

const enc = new TextEncoder();

function b64(buf) {
  let s = '';
  for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
  return btoa(s);
}

function b64url(s) {
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

async function hmac(key, text) {
  const k = await crypto.subtle.importKey('raw', enc.encode(key), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return b64(await crypto.subtle.sign('HMAC', k, enc.encode(text)));
}

function hostPort(u) {
  return [u.hostname.toLowerCase(), u.port || (u.protocol === 'https:' ? '443' : '80')];
}

// hawkHeader is the Hawk Authorization header of a request (no payload
// hash, no ext: Taskcluster clients send none for permanent credentials).
export async function hawkHeader(creds, method, url) {
  const u = new URL(url);
  const [host, port] = hostPort(u);
  const ts = Math.floor(Date.now() / 1000);
  const nonce = b64url(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(9))));
  const norm = ['hawk.1.header', ts, nonce, method.toUpperCase(), u.pathname + u.search, host, port, '', ''].join('\n') + '\n';
  const mac = await hmac(creds.accessToken, norm);
  return `Hawk id="${creds.clientId}", ts="${ts}", nonce="${nonce}", mac="${mac}"`;
}

// bewitURL signs url for GET until expiry (seconds from now).
export async function bewitURL(creds, url, seconds = 900) {
  const u = new URL(url);
  const [host, port] = hostPort(u);
  const exp = Math.floor(Date.now() / 1000) + seconds;
  const norm = ['hawk.1.bewit', exp, '', 'GET', u.pathname + u.search, host, port, '', ''].join('\n') + '\n';
  const mac = await hmac(creds.accessToken, norm);
  const bewit = b64url(`${creds.clientId}\\${exp}\\${mac}\\`);
  return url + (u.search ? '&' : '?') + 'bewit=' + bewit;
}

async function postJSON(path, body) {
  const r = await fetch(origin + path, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.message || `${path}: HTTP ${r.status}`);
  return data;
}

export { postJSON };

// signer returns how to sign now: the user's credentials, else the admin
// signing endpoint when the server offers it, else the credentials the
// user is asked for.
async function signer(why) {
  const c = storedCredentials();
  if (c) return { creds: c };
  const cfg = await config();
  if (cfg.adminSigning) return { server: true };
  const asked = await askCredentials(why);
  if (!asked) throw new Error('no credentials: the action was not sent');
  return { creds: asked };
}

export async function authorization(method, url, why) {
  const s = await signer(why);
  if (s.server) return (await postJSON('/ui/api/sign', { method, url })).authorization;
  if (!subtleAvailable()) throw new Error('this browser cannot sign here (needs https or localhost)');
  return hawkHeader(s.creds, method, url);
}

export async function signedURL(url, why) {
  const s = await signer(why);
  if (s.server) return (await postJSON('/ui/api/sign', { url, bewit: true })).url;
  return bewitURL(s.creds, url);
}

// apiError turns a Taskcluster error body into an Error.
async function apiError(r) {
  const body = await r.json().catch(() => ({}));
  const e = new Error(body.message ? `${body.code}: ${body.message}` : `HTTP ${r.status}`);
  e.status = r.status;
  e.code = body.code;
  return e;
}

// get reads the queue API anonymously.
export async function get(path) {
  const r = await fetch(apiBase + path);
  if (!r.ok) throw await apiError(r);
  return r.json();
}

// call sends a signed request to the queue API.
export async function call(method, path, body, why) {
  const url = apiBase + path;
  const headers = { Authorization: await authorization(method, url, why) };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!r.ok) throw await apiError(r);
  return r.json();
}

// renderWho fills the header's credentials corner.
export async function renderWho() {
  const who = document.getElementById('who');
  if (!who) return;
  who.replaceChildren();
  const c = storedCredentials();
  if (c) {
    who.append('signed in as ', el('code', {}, c.clientId),
      el('button', { onclick: () => { forgetCredentials(); renderWho(); } }, 'forget'));
    return;
  }
  const cfg = await config();
  if (cfg.adminSigning) {
    who.append('actions signed by the server as ', el('code', {}, cfg.adminClientId));
  } else {
    who.append('anonymous (read only) ', el('button', { onclick: () => askCredentials() }, 'enter credentials'));
  }
}

// toYAML renders a JSON value as YAML (for display only).
export function toYAML(v, indent = '') {
  const scalar = (x) => {
    if (x === null) return 'null';
    if (typeof x === 'string') {
      return /^[A-Za-z0-9_./@-][A-Za-z0-9_ ./@:+-]*$/.test(x) && !/^(true|false|null|yes|no|on|off|[-+]?[0-9.].*)$/i.test(x) && !/[: ]$/.test(x) && !x.includes(': ')
        ? x : JSON.stringify(x);
    }
    return String(x);
  };
  const isObj = (x) => x !== null && typeof x === 'object';
  if (!isObj(v)) return scalar(v);
  const lines = [];
  if (Array.isArray(v)) {
    if (!v.length) return '[]';
    for (const x of v) {
      if (isObj(x) && Object.keys(x).length) {
        const inner = toYAML(x, indent + '  ');
        lines.push(indent + '- ' + inner.trimStart());
      } else lines.push(indent + '- ' + (isObj(x) ? (Array.isArray(x) ? '[]' : '{}') : scalar(x)));
    }
    return lines.join('\n');
  }
  const keys = Object.keys(v);
  if (!keys.length) return '{}';
  for (const k of keys) {
    const x = v[k];
    const key = scalar(k);
    if (isObj(x) && Object.keys(x).length) lines.push(indent + key + ':\n' + toYAML(x, indent + '  '));
    else lines.push(indent + key + ': ' + (isObj(x) ? (Array.isArray(x) ? '[]' : '{}') : scalar(x)));
  }
  return lines.join('\n');
}

export function showError(where, err) {
  where.replaceChildren(el('p', { class: 'error', role: 'alert' }, String(err && err.message ? err.message : err)));
}

renderWho();
