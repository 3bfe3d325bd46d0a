// Browser end-to-end test of the docker-worker web page, in Debian's
// chromium driven by playwright-core. test/e2e/webui_test.go starts
// `docker-worker dev` and runs this script with:
//
//   DW_ROOT_URL        the queue's root URL (the page is at DW_ROOT_URL/)
//   DW_CLIENT_ID, DW_ACCESS_TOKEN  credentials to type into the page once
//   DW_IMAGE           the image of the tasks submitted through the form
//   DW_SCREENSHOTS     where the screenshots go (created)
//   DW_CHROMIUM        the browser (default /usr/bin/chromium)
//   DW_UI_ADMIN=1      dev runs with --ui-admin: only the steps that check
//                      that the server signs (no credentials asked)
//
// It prints one line per step ("ok <step>" or "FAIL <step>: why") and
// ends with "N passed, N failed"; the exit status is 1 when a step failed.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = process.env.DW_ROOT_URL;
const clientId = process.env.DW_CLIENT_ID;
const accessToken = process.env.DW_ACCESS_TOKEN;
const image = process.env.DW_IMAGE || 'docker-worker-test/busybox:latest';
const shots = process.env.DW_SCREENSHOTS || 'screenshots';
const executablePath = process.env.DW_CHROMIUM || '/usr/bin/chromium';
if (!root || !clientId || !accessToken) {
  console.error('DW_ROOT_URL, DW_CLIENT_ID and DW_ACCESS_TOKEN are required');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

let passed = 0;
let failed = 0;
async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  }
}
function check(cond, msg) { if (!cond) throw new Error(msg); }
const shot = (page, name) => page.screenshot({ path: join(shots, name + '.png'), fullPage: true });

const userDataDir = mkdtempSync(join(tmpdir(), 'dw-webui-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
context.setDefaultTimeout(60_000);
const page = context.pages()[0] || await context.newPage();
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
// Task text that reached the page as markup would run a script: none may.
const dialogs = [];
page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });

const yamlTask = (name, script, extra = '') => `metadata:
  name: ${name}
  description: submitted by the browser test
  owner: webui-test@localhost
  source: https://localhost/webui-test
payload:
  image: ${image}
  command: [sh, -c, ${JSON.stringify(script)}]
  maxRunTime: 300
${extra}`;

// submit fills the form with text and submits it; the credentials dialog
// is answered when it shows.
async function submit(text) {
  await page.goto(root + '/submit');
  await page.fill('#text', text);
  await page.click('#submit');
  const dialog = page.locator('#creds-dialog');
  const landed = page.waitForURL(/\/tasks\/[A-Za-z0-9_-]{22}$/);
  const asked = await Promise.race([
    dialog.waitFor({ state: 'visible' }).then(() => true),
    landed.then(() => false),
  ]);
  if (asked) {
    await page.fill('#creds-dialog input[name=clientId]', clientId);
    await page.fill('#creds-dialog input[name=accessToken]', accessToken);
    await page.click('#creds-ok');
  }
  await landed;
  return { taskId: page.url().split('/').pop(), asked };
}

const taskState = () => page.locator('#state .state').getAttribute('data-state');
async function waitState(want, timeout = 120_000) {
  await page.locator(`#state .state[data-state="${want}"]`).waitFor({ timeout });
}

let logTaskId = '';

if (process.env.DW_UI_ADMIN === '1') {
  await step('dev --ui-admin: the server signs actions and private URLs, no credentials asked', async () => {
    await page.goto(root + '/');
    await page.locator('#who').filter({ hasText: 'signed by the server' }).waitFor();
    const { taskId, asked } = await submit(yamlTask('webui admin task', 'mkdir -p /out; echo private-body > /out/secret.txt; echo admin-done', `  artifacts:
    private/secret.txt:
      type: file
      path: /out/secret.txt
`));
    check(!asked, 'the page asked for credentials although the server signs');
    await waitState('completed');
    // An action: rerun makes run 1.
    await page.click('#rerun');
    await page.locator('#runs tbody tr[data-run="1"]').waitFor();
    await waitState('completed');
    const link = page.locator('a[data-artifact="private/secret.txt"]');
    await link.waitFor({ timeout: 60_000 });
    await link.click();
    await page.waitForURL((u) => !u.pathname.includes('/tasks/'));
    check((await page.locator('body').textContent()).includes('private-body'), 'private artifact not served through the signed URL');
    check(!!taskId, 'no task id');
    await page.screenshot({ path: join(shots, 'ui-admin-private-artifact.png') });
  });
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
  console.log(`screenshots in ${shots}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

await step('task list loads', async () => {
  await page.goto(root + '/');
  await page.locator('#count').filter({ hasText: 'tasks' }).waitFor();
  await shot(page, 'task-list-empty');
});

await step('submit form shows schema errors per field (uploaded file)', async () => {
  await page.goto(root + '/submit');
  const doc = `image: ${image}\ncommand: [sh, -c, "true"]\nmaxRunTime: soon\n`;
  await page.setInputFiles('#file', { name: 'bad.yml', mimeType: 'text/yaml', buffer: Buffer.from(doc) });
  await page.waitForFunction((d) => document.getElementById('text').value === d, doc);
  await page.click('#submit');
  const item = page.locator('#problem-list li[data-path="payload.maxRunTime"]');
  await item.waitFor();
  check((await item.textContent()).includes('must be integer'), 'maxRunTime problem not explained');
  check(page.url().endsWith('/submit'), 'left the form on an invalid document');
  await shot(page, 'submit-errors');
});

await step('submit a task through the form and watch its log lines appear live', async () => {
  const script = 'for i in 1 2 3 4 5 6 7 8; do echo live-line-$i; sleep 1; done; ' +
    'echo "<script>alert(1)</script><b>bold</b>"; mkdir -p /out; echo artifact-body > /out/hello.txt';
  const { taskId, asked } = await submit(yamlTask('webui log task', script, `  artifacts:
    public/hello.txt:
      type: file
      path: /out/hello.txt
`));
  check(asked, 'the page did not ask for credentials');
  logTaskId = taskId;
  await page.locator('#log').filter({ hasText: 'live-line-2' }).waitFor({ timeout: 120_000 });
  check(await taskState() === 'running', `state ${await taskState()} when line 2 appeared, want running`);
  check(!(await page.locator('#log').textContent()).includes('live-line-8'), 'the whole log was there at once: not live');
  await shot(page, 'task-running');
  await page.locator('#log').filter({ hasText: 'live-line-5' }).waitFor();
  check(await taskState() === 'running', 'the task resolved before line 5: not live');
});

await step('a completed task shows its backing log, timings, runs and escaped task text', async () => {
  await waitState('completed');
  await page.locator('#log-source').filter({ hasText: 'backing log' }).waitFor();
  const log = await page.locator('#log').textContent();
  check(log.includes('<script>alert(1)</script><b>bold</b>'), 'the task\'s markup is not shown as text');
  check(await page.locator('#log b').count() === 0 && await page.locator('#log script').count() === 0, 'task text became markup');
  check(dialogs.length === 0, `a task's script ran: ${dialogs}`);
  await page.locator('#timings-table').waitFor();
  const phases = await page.locator('#timings-table td:first-child').allTextContents();
  check(phases.includes('queued') && phases.includes('started'), `timings phases ${phases}`);
  check(await page.locator('#runs tbody tr[data-run="0"] .state[data-state="completed"]').count() === 1, 'run 0 not completed');
  check((await page.locator('#definition').textContent()).includes('webui log task'), 'definition missing (YAML)');
  await page.click('#tab-json');
  check((await page.locator('#definition').textContent()).includes('"name": "webui log task"'), 'definition missing (JSON)');
  await page.click('#tab-yaml');
  await shot(page, 'task-completed');
  // The README's picture: the top of the task page, one screen.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(shots, 'task-page.png') });
});

await step('open an artifact', async () => {
  const link = page.locator('a[data-artifact="public/hello.txt"]');
  await link.waitFor();
  const row = link.locator('xpath=ancestor::tr');
  check((await row.textContent()).includes('text/plain'), 'content type not shown');
  const [popup] = await Promise.all([context.waitForEvent('page'), link.click()]);
  await popup.waitForLoadState();
  const body = await popup.locator('body').textContent();
  check(body.includes('artifact-body'), `artifact body ${JSON.stringify(body)}`);
  await popup.screenshot({ path: join(shots, 'artifact.png') });
  await popup.close();
});

await step('the task list shows the task, newest first, filtered by state and group', async () => {
  await page.goto(root + '/');
  const row = page.locator(`#tasks tr[data-task-id="${logTaskId}"]`);
  await row.waitFor();
  check(await row.locator('.state[data-state="completed"]').count() === 1, 'list state is not completed');
  await page.selectOption('#state', 'running');
  await page.waitForURL(/state=running/);
  await row.waitFor({ state: 'detached' });
  await page.selectOption('#state', 'completed');
  await row.waitFor();
  await shot(page, 'task-list');
});

await step('cancel a running task (credentials asked once)', async () => {
  const { asked } = await submit(yamlTask('webui cancel task', 'echo waiting-for-cancel; sleep 600'));
  check(!asked, 'the page asked for credentials a second time');
  await waitState('running');
  await page.locator('#log').filter({ hasText: 'waiting-for-cancel' }).waitFor();
  await page.click('#cancel');
  await waitState('exception', 60_000);
  check((await page.locator('#runs tbody tr[data-run="0"]').textContent()).includes('canceled'), 'run not resolved canceled');
  await shot(page, 'task-cancelled');
});

await step('run an interactive shell and type a command', async () => {
  const { taskId } = await submit(yamlTask('webui shell task', 'echo shell-task-started; sleep 240', `  features:
    interactive: true
`));
  await waitState('running');
  const link = page.locator('a[data-artifact$="shell.html"]');
  await link.waitFor({ timeout: 60_000 });
  await link.click();
  await page.waitForURL(/\/shell\/\?/);
  const term = page.locator('#terminal .xterm');
  const terminal = await page.evaluate(() => !!window.Terminal);
  if (terminal) {
    await term.waitFor();
    await page.locator('#status').filter({ hasText: 'connected' }).waitFor();
    await term.click();
    await page.keyboard.type('echo hello-$((6*7))\n');
    await page.locator('#terminal .xterm-rows').filter({ hasText: 'hello-42' }).waitFor();
  } else {
    await page.locator('#not-built').waitFor();
    await page.locator('#status').filter({ hasText: 'connected' }).waitFor();
    await page.fill('#line-input', 'echo hello-$((6*7))');
    await page.press('#line-input', 'Enter');
    await page.locator('#line-output').filter({ hasText: 'hello-42' }).waitFor();
  }
  await shot(page, 'shell');
  console.log(`  shell page: terminal ${terminal ? 'xterm' : 'line mode (xterm not built)'}`);
  // Done with the task: cancel it from its page.
  await page.goto(root + '/tasks/' + taskId);
  await waitState('running');
  await page.click('#cancel');
  await waitState('exception', 60_000);
});

await step('no console errors', async () => {
  // A missing xterm.js is expected when the terminal is not built.
  const errs = consoleErrors.filter((e) => !/xterm/.test(e) && !/404/.test(e));
  check(errs.length === 0, errs.join('\n'));
});

await context.close();
rmSync(userDataDir, { recursive: true, force: true });
console.log(`screenshots in ${shots}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
