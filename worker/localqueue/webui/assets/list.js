// The task list: newest first, filtered by state and task group (kept in
// the page's query string), refreshed every two seconds.
import { base, origin, el, stateBadge, fmtTime, showError } from './common.js';

const form = document.getElementById('filter');
const stateSel = document.getElementById('state');
const groupIn = document.getElementById('taskGroupId');
const tbody = document.querySelector('#tasks tbody');
const count = document.getElementById('count');
const errBox = document.getElementById('error');

const params = new URLSearchParams(location.search);
stateSel.value = params.get('state') || '';
groupIn.value = params.get('taskGroupId') || '';

function filterQuery() {
  const q = new URLSearchParams();
  if (stateSel.value) q.set('state', stateSel.value);
  if (groupIn.value.trim()) q.set('taskGroupId', groupIn.value.trim());
  return q;
}

async function refresh() {
  const q = filterQuery();
  try {
    const r = await fetch(origin + '/ui/api/tasks?' + q);
    const data = await r.json();
    if (!r.ok) throw new Error(data.message || `HTTP ${r.status}`);
    errBox.replaceChildren();
    tbody.replaceChildren(...data.tasks.map((t) => el('tr', { 'data-task-id': t.taskId },
      el('td', {}, el('a', { href: base + '/tasks/' + encodeURIComponent(t.taskId) }, t.name || t.taskId),
        el('div', { class: 'muted mono' }, t.taskId)),
      el('td', {}, stateBadge(t.state), t.reasonResolved ? el('div', { class: 'muted' }, t.reasonResolved) : null),
      el('td', {}, fmtTime(t.created)),
      el('td', {}, t.runs),
      el('td', {}, el('a', { class: 'mono', href: '?taskGroupId=' + encodeURIComponent(t.taskGroupId) }, t.taskGroupId)),
      el('td', { class: 'mono' }, t.taskQueueId))));
    if (!data.tasks.length) tbody.append(el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No tasks.')));
    count.textContent = data.total > data.tasks.length ? `${data.tasks.length} of ${data.total} tasks` : `${data.total} tasks`;
  } catch (e) {
    showError(errBox, e);
  }
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const q = filterQuery().toString();
  history.replaceState(null, '', q ? '?' + q : location.pathname);
  refresh();
});
stateSel.addEventListener('change', () => form.requestSubmit());

refresh();
setInterval(() => { if (!document.hidden) refresh(); }, 2000);
