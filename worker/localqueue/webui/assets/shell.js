// The interactive shell page (<rootUrl>/shell/?v=1&socketUrl=…&taskId=…&runId=…):
// a terminal on the task's docker-exec websocket (docker-exec-websocket-
// server protocol v3: binary messages, the first byte their type). With
// xterm embedded it runs `sh` with a terminal; without it, a line-mode
// shell without terminal.
import { base, showError } from './common.js';

const MSG = { stdin: 0, stdout: 1, stderr: 2, resize: 50, resume: 100, pause: 101, end: 102, stopped: 200, shutdown: 201, error: 202 };
const $ = (id) => document.getElementById(id);
const q = new URLSearchParams(location.search);
const socketUrl = q.get('socketUrl');
const taskId = q.get('taskId') || '';
const runId = q.get('runId') || '';
const status = $('status');
const enc = new TextEncoder();

$('task-link').href = base + '/tasks/' + encodeURIComponent(taskId);
$('task-link').textContent = `Task ${taskId} run ${runId}`;

function frame(type, bytes) {
  const m = new Uint8Array(1 + bytes.length);
  m[0] = type;
  m.set(bytes, 1);
  return m;
}

function open(tty, onOutput, onEnd) {
  let u;
  try {
    u = new URL(socketUrl);
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error('not a websocket URL');
  } catch (e) {
    throw new Error(`socketUrl ${JSON.stringify(socketUrl)} is not a websocket URL`);
  }
  u.searchParams.set('tty', String(tty));
  u.searchParams.append('command', 'sh');
  const ws = new WebSocket(u.toString());
  ws.binaryType = 'arraybuffer';
  ws.addEventListener('open', () => { status.textContent = 'connected'; });
  ws.addEventListener('message', (ev) => {
    const m = new Uint8Array(ev.data);
    if (!m.length) return;
    const body = m.subarray(1);
    switch (m[0]) {
      case MSG.stdout: case MSG.stderr: onOutput(body); break;
      case MSG.resume: status.textContent = 'connected: ready'; break;
      case MSG.pause: status.textContent = 'connected: paused'; break;
      case MSG.stopped: onEnd(`[the shell exited with status ${body[0]}]`); break;
      case MSG.shutdown: onEnd('[the worker closed the session]'); break;
      case MSG.error: onEnd('[error: ' + new TextDecoder().decode(body) + ']'); break;
      default: break;
    }
  });
  ws.addEventListener('close', () => { status.textContent = 'disconnected'; });
  ws.addEventListener('error', () => { status.textContent = 'connection failed'; });
  return {
    send: (bytes) => { if (ws.readyState === WebSocket.OPEN) ws.send(frame(MSG.stdin, bytes)); },
    resize: (rows, cols) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      const m = new Uint8Array(5);
      const dv = new DataView(m.buffer);
      m[0] = MSG.resize;
      dv.setUint16(1, rows, true);
      dv.setUint16(3, cols, true);
      ws.send(m);
    },
    ws,
  };
}

function withTerminal() {
  const box = $('terminal');
  box.hidden = false;
  const term = new window.Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, scrollback: 5000 });
  term.open(box);
  // Fit the terminal to its box from the measured cell size.
  const fit = () => {
    const cell = box.querySelector('.xterm-rows > div');
    const h = cell ? cell.getBoundingClientRect().height : 17;
    const w = h * 0.6;
    const cols = Math.max(20, Math.floor((box.clientWidth - 8) / w));
    const rows = Math.max(5, Math.floor((box.clientHeight - 8) / h));
    term.resize(cols, rows);
  };
  fit();
  const s = open(true, (b) => term.write(b), (msg) => term.write('\r\n' + msg + '\r\n'));
  term.onData((d) => s.send(enc.encode(d)));
  term.onResize(({ rows, cols }) => s.resize(rows, cols));
  s.ws.addEventListener('open', () => { s.resize(term.rows, term.cols); term.focus(); });
  window.addEventListener('resize', fit);
}

function lineMode() {
  $('lines').hidden = false;
  const out = $('line-output');
  const dec = new TextDecoder();
  const append = (t) => { out.append(document.createTextNode(t)); out.scrollTop = out.scrollHeight; };
  const s = open(false, (b) => append(dec.decode(b, { stream: true })), (msg) => append('\n' + msg + '\n'));
  $('line-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('line-input');
    append('$ ' + input.value + '\n');
    s.send(enc.encode(input.value + '\n'));
    input.value = '';
  });
  $('line-input').focus();
}

try {
  if (!socketUrl) throw new Error('this page needs ?socketUrl=… (open it from a task\'s shell.html artifact)');
  if (window.Terminal) withTerminal(); else lineMode();
} catch (e) {
  status.textContent = '';
  showError($('error'), e);
}

