// The submit form: the server checks the document against the payload
// schema (and completes it into a task definition); the page then creates
// the task with the user's credentials and opens its page.
import { base, el, call, config, postJSON, showError } from './common.js';

const form = document.getElementById('submit-form');
const text = document.getElementById('text');
const file = document.getElementById('file');
const problems = document.getElementById('problems');
const button = document.getElementById('submit');
let fileName = '';

config().then((c) => { document.getElementById('pool').textContent = `${c.provisionerId}/${c.workerType}`; });

file.addEventListener('change', async () => {
  const f = file.files[0];
  if (!f) return;
  fileName = f.name;
  text.value = await f.text();
});

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  problems.replaceChildren();
  button.disabled = true;
  try {
    const v = await postJSON('/ui/api/validate', { text: text.value, name: fileName });
    if (v.problems.length) {
      problems.append(el('h2', {}, 'The task was not created:'),
        el('ul', { class: 'problems', id: 'problem-list' }, v.problems.map((p) =>
          el('li', { 'data-path': p.path }, el('code', {}, p.path), ': ', p.message))));
      return;
    }
    await call('PUT', '/task/' + encodeURIComponent(v.taskId), v.task, 'Creating a task needs credentials.');
    location.href = base + '/tasks/' + encodeURIComponent(v.taskId);
  } catch (e) {
    showError(problems, e);
  } finally {
    button.disabled = false;
  }
});
