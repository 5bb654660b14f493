// Shoal's web console in headless Chromium against a real server and agents (started by
// crates/shoal/tests/console.rs, which passes everything in the environment):
// log in, run a script on hosts and watch its results arrive live, open a host's log (and a
// 5 MB one), terminate a long job from the page, retry failed hosts, confirm and reject
// waiting jobs, approve a template change as a second user, read and verify the audit,
// pick hosts from the topology tree, edit a cron job and a dangerous rule in place, see
// every page in Chinese.
// Exits non-zero on the first failed expectation.
import { chromium } from 'playwright-core';
import { writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const URL_ = env('SHOAL_URL');
const USER = env('SHOAL_USER'); const PASSWORD = env('SHOAL_PASSWORD');
const APPROVER = env('SHOAL_APPROVER'); const APPROVER_PASSWORD = env('SHOAL_APPROVER_PASSWORD');
const HOSTS = env('SHOAL_HOSTS').split(',');
const GATE = env('SHOAL_GATE');
const TEMPLATE = env('SHOAL_TEMPLATE');
const FILES_DIR = env('SHOAL_FILES_DIR');
const [TO_CONFIRM, TO_REJECT] = env('SHOAL_CONFIRM_JOBS').split(',');
const SHOT = process.env.SHOAL_SCREENSHOT;
const CRON_PLAN = env('SHOAL_CRON_PLAN');
const T = 60_000;

function check(cond, what) { if (!cond) throw new Error(`expected: ${what}`); }
const step = (s) => console.log(`console test: ${s}`);

const browser = await chromium.launch({
  executablePath: process.env.SHOAL_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
});
let failed = false;
const page = await browser.newPage({ viewport: { width: 1360, height: 900 }, locale: 'en-US', acceptDownloads: true });
page.setDefaultTimeout(T);
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));

// UI text of the shown page that is still English — in headings, labels, buttons, table
// headers, badges, options, placeholders and titles. What users and hosts named (job,
// template and topology names, accounts, IPs) is data, not UI, and so are table cells and
// examples of syntax; product words (Shoal, Agent, Crontab, script languages) stay as they are.
function untranslated() {
  return page.evaluate(() => {
    const ALLOWED = /^(Shoal|Agent|IP|ID|Crontab|Shell|Bat|Perl|Python|PowerShell|English)$/;
    const DATA = '#who, #account, #file-account, #library-script, #cron-plan, .topo-node, #job-head h1, #log-panel h2, .approval strong, #library-detail h2, .step > .row > strong';
    const EXAMPLES = '#selector, #target-dir, #targets, #file-targets, #check-script';
    const out = new Set();
    for (const el of document.querySelectorAll('header a, h1, h2, label, button, th, option, .badge, .group .row > span, #fleet-pending p, [placeholder], [title]')) {
      if (el.closest(DATA) || (el.closest('td') && !el.matches('button, .badge'))) continue;
      const texts = [el.matches('input, textarea, select') ? '' : el.textContent];
      if (!el.matches(EXAMPLES)) texts.push(el.getAttribute('placeholder') || '', el.getAttribute('title') || '');
      for (const text of texts) {
        if ((text.match(/[A-Za-z]{3,}/g) || []).some((w) => !ALLOWED.test(w))) out.add(`<${el.tagName.toLowerCase()}> ${text.trim().slice(0, 80)}`);
      }
    }
    return [...out];
  });
}

async function logIn(user, password) {
  await page.goto(`${URL_}/`);
  await page.waitForURL(/\/console\/login$/);
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password);
  await page.click('#login');
  await page.waitForSelector('#who');
  check((await page.textContent('#who')) === user, `logged in as ${user}`);
}

try {
  step("the browser's language is the default");
  const zh = await browser.newPage({ locale: 'zh-CN' });
  await zh.goto(`${URL_}/console/`);
  await zh.waitForSelector('#login:has-text("登录")');
  await zh.close();

  step('a wrong password is refused');
  await page.goto(`${URL_}/console/login`);
  await page.fill('input[name=username]', USER);
  await page.fill('input[name=password]', 'not the password');
  await page.click('#login');
  await page.waitForSelector('.error:has-text("Wrong")');

  step('log in');
  await logIn(USER, PASSWORD);
  await page.waitForSelector('#run-form[data-ready]');
  // The cookie is HttpOnly and alone it opens nothing: a call without the CSRF header is 401.
  check(!(await page.evaluate(() => document.cookie)).includes('shoal_session'), 'the session cookie is out of script reach');
  const bare = await page.evaluate(async () => (await fetch('/api/shoal/v1/users/tokens')).status);
  check(bare === 401, `a call without the CSRF token is refused (got ${bare})`);

  step('language switch');
  await page.selectOption('header select', 'zh');
  await page.waitForSelector('header a:has-text("快速执行")');
  await page.selectOption('header select', 'en');
  await page.waitForSelector('header a:has-text("Quick execution")');

  step('run a script on hosts, live');
  await page.waitForSelector('#run-form[data-ready]');
  await page.fill('#targets', `${HOSTS.join('\n')}\n10.255.255.254`);
  await page.waitForSelector('#match-count:has-text("3 of 4")');
  await page.fill('#job-name', 'console-hello');
  await page.fill('#script', `while [ ! -e ${GATE} ]; do sleep 0.1; done\nfor i in $(seq 1 2000); do echo "line $i of the log"; done\necho done`);
  await page.click('#execute');
  await page.waitForURL(/\/console\/jobs\/\d+$/);
  const jobUrl = page.url();
  // Running, waiting at the gate: the page shows it live.
  await page.waitForSelector('#job-status[data-status="2"]');
  await page.waitForSelector('#live[data-state="live"]');
  // A running host's log is open before it prints anything, and follows it.
  await page.click('.group >> nth=0');
  await page.click('.hosts button.host >> nth=0');
  await page.waitForSelector('#log-info');
  writeFileSync(GATE, '');
  // Results arrive without a reload: one group of three identical answers, the job done.
  await page.waitForSelector('.group[data-status="9"][data-count="3"]');
  await page.waitForSelector('#job-status[data-status="3"]');
  await page.waitForSelector('#log-info:has-text("2001")');
  check(page.url() === jobUrl, 'no navigation happened');

  step("open a host's log");
  await page.click('.group[data-status="9"]');
  await page.click('.hosts button.host >> nth=0');
  await page.waitForSelector('#log .line');
  const lines = await page.$$eval('#log .line', (els) => els.length);
  check(lines > 0 && lines < 200, `only the visible lines are in the page (${lines})`);
  await page.waitForSelector('#log-info:has-text("2001")');
  await page.fill('#log-search', 'line 1999 ');
  await page.waitForSelector('#log-info:has-text("1/2001")');
  check((await page.textContent('#log .line')).includes('line 1999 of the log'), 'search finds the line');
  await page.fill('#log-search', '');
  check(await page.getAttribute('#log-download', 'download'), 'a download link');

  step("a big group's hosts: the first listed, all of them on demand");
  await page.goto(`${jobUrl}?hosts_per_group=1`);
  await page.click('.group[data-status="9"]');
  await page.waitForSelector('.hosts button.host');
  check((await page.$$('.hosts button.host')).length === 1, 'one host listed');
  await page.click('button.all-hosts');
  await page.waitForSelector('.all-hosts-list .vrow >> nth=2');
  await page.click('.all-hosts-list .vrow >> nth=2');
  await page.waitForSelector('#log-info:has-text("2001")');

  step("an open list of a group's hosts follows the job live");
  await page.click('header a[href="/console/run"]');
  await page.waitForSelector('#run-form[data-ready]');
  await page.fill('#targets', HOSTS.join(' '));
  await page.waitForSelector('#match-count:has-text("3 of 3")');
  await page.fill('#job-name', 'console-growing');
  // The first host answers at once, the others when their gates open; all the same answer.
  await page.fill('#script', [
    `case "$0" in *${HOSTS[0]}*) ;; *${HOSTS[1]}*) while [ ! -e ${GATE}.second ]; do sleep 0.1; done ;; *) while [ ! -e ${GATE}.third ]; do sleep 0.1; done ;; esac`,
    'echo same',
  ].join('\n'));
  await page.click('#execute');
  await page.waitForURL(/\/console\/jobs\/\d+$/);
  await page.goto(`${page.url()}?hosts_per_group=1`);
  await page.waitForSelector('.group[data-status="9"][data-count="1"]');
  writeFileSync(`${GATE}.second`, '');
  await page.waitForSelector('.group[data-status="9"][data-count="2"]');
  await page.click('.group[data-status="9"]');
  await page.click('button.all-hosts');
  await page.waitForSelector('.all-hosts-box:has-text("All 2 hosts of this group")');
  writeFileSync(`${GATE}.third`, '');
  await page.waitForSelector('#job-status[data-status="3"]');
  await page.waitForSelector('.all-hosts-box:has-text("All 3 hosts of this group")');
  await page.waitForFunction(() => document.querySelectorAll('.all-hosts-list .vrow').length === 3);

  step('terminate a long job from the page');
  await page.click('header a[href="/console/run"]');
  await page.waitForSelector('#run-form[data-ready]');
  await page.fill('#targets', HOSTS[0]);
  await page.waitForSelector('#match-count:has-text("1 of 1")');
  await page.fill('#job-name', 'console-sleep');
  await page.fill('#script', 'sleep 600');
  await page.click('#execute');
  await page.waitForURL(/\/console\/jobs\/\d+$/);
  await page.waitForSelector('#job-status[data-status="2"]');
  await page.click('#terminate');
  await page.waitForFunction(() => ['8', '11'].includes(document.querySelector('#job-status')?.dataset.status));

  step('a 5 MB log opens without freezing the page');
  await page.click('header a[href="/console/run"]');
  await page.waitForSelector('#run-form[data-ready]');
  await page.fill('#targets', HOSTS[1]);
  await page.waitForSelector('#match-count:has-text("1 of 1")');
  await page.fill('#job-name', 'console-big');
  // 50,000 numbered lines of 107 bytes: 5,350,000 bytes, past the default 5 MiB output cap
  // (the test server keeps 8 MiB).
  const BIG_LINES = 50000;
  const pad = '0123456789'.repeat(8);
  const bigLine = (i) => `line ${String(i).padStart(5, '0')} of the big log ${pad}\n`;
  await page.fill('#script', `awk 'BEGIN { for (i = 1; i <= ${BIG_LINES}; i++) printf "line %05d of the big log ${pad}\\n", i }'`);
  await page.click('#execute');
  await page.waitForURL(/\/console\/jobs\/\d+$/);
  await page.waitForSelector('#job-status[data-status="3"]');
  await page.click('.group[data-status="9"]');
  // The longest the page's main thread was busy while the log came, was split and shown.
  await page.evaluate(() => {
    window.__gap = 0; let last = performance.now();
    window.__ticker = setInterval(() => { const now = performance.now(); window.__gap = Math.max(window.__gap, now - last); last = now; }, 20);
  });
  await page.click('.hosts button.host >> nth=0');
  await page.waitForSelector(`#log-info:has-text("${BIG_LINES}")`);
  await page.waitForSelector('#log .line');
  const gap = await page.evaluate(() => { clearInterval(window.__ticker); return window.__gap; });
  check(gap < 3000, `the page never froze while the 5 MB log opened (longest busy spell ${gap.toFixed(0)} ms)`);
  const inPage = await page.$$eval('#log .line', (els) => els.length);
  check(inPage > 0 && inPage < 200, `only the visible lines of ${BIG_LINES} are in the page (${inPage})`);
  await page.$eval('#log', (el) => { el.scrollTop = el.scrollHeight; });
  await page.waitForFunction((n) => [...document.querySelectorAll('#log .line')].some((l) => parseInt(l.style.top, 10) >= (n - 10) * 18), BIG_LINES);
  check((await page.$$eval('#log .line', (els) => els.length)) < 200, 'still only the visible lines at the end');
  await page.fill('#log-search', 'line 49990 ');
  await page.waitForSelector(`#log-info:has-text("1/${BIG_LINES}")`);
  check((await page.textContent('#log .line')).startsWith('line 49990 of the big log'), 'search finds a line near the end');
  await page.fill('#log-search', 'nothing like this');
  await page.waitForSelector(`#log-info:has-text("0/${BIG_LINES}")`);
  await page.fill('#log-search', '');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#log-download')]);
  const saved = readFileSync(await download.path(), 'utf8');
  let whole = '';
  for (let i = 1; i <= BIG_LINES; i++) whole += bigLine(i);
  check(saved.length === 5350000 && saved === whole, `the download is the whole log (${saved.length} bytes)`);

  step('retry the failed hosts of a failed job');
  await page.click('header a[href="/console/run"]');
  await page.waitForSelector('#run-form[data-ready]');
  // The topology tree: business → named set → named modules, with their host counts; a
  // node checks everything under it, the count follows.
  await page.waitForSelector('#topology .topo-set > label:has-text("prod (#1)")');
  await page.waitForSelector('#topology .topo-module > label:has-text("mysql (#2) (1)")');
  await page.waitForSelector('#topology .topo-biz > label:has-text("(3)")');
  await page.check('#topology input[data-node="biz"]');
  await page.waitForSelector('#match-count:has-text("3 of 0")');
  check(await page.$$eval('#topology input[data-node="module"]', (els) => els.every((e) => e.checked)), 'the business checks its modules');
  await page.uncheck('#topology input[value="1/1"]');
  await page.waitForSelector('#match-count:has-text("1 of 0")');
  check(await page.$eval('#topology input[data-node="biz"]', (e) => !e.checked && e.indeterminate), 'the business is half-checked');
  // The half-checked set checks all under it, then clears it.
  await page.check('#topology input[data-node="set"][value="1"]');
  await page.waitForSelector('#match-count:has-text("3 of 0")');
  check(await page.$eval('#topology input[data-node="biz"]', (e) => e.checked && !e.indeterminate), 'the business is checked again');
  await page.uncheck('#topology input[data-node="set"][value="1"]');
  await page.waitForSelector('#match-count:has-text("0 of 0")');
  // Targets by label selector (two web hosts) and by topology (module 2: the db host).
  await page.fill('#selector', 'role=web');
  await page.waitForSelector('#match-count:has-text("2 of 0")');
  await page.check('#topology input[value="1/2"]');
  await page.waitForSelector('#match-count:has-text("3 of 0")');
  await page.fill('#job-name', 'console-retry');
  await page.fill('#script', `[ -e ${GATE}.retry ] || { echo not yet; exit 3; }\necho now`);
  await page.click('#execute');
  await page.waitForURL(/\/console\/jobs\/\d+$/);
  await page.waitForSelector('#job-status[data-status="4"]');
  await page.waitForSelector('.group[data-count="3"]:has-text("exit 3")');
  writeFileSync(`${GATE}.retry`, '');
  await page.click('button.retry-failed');
  await page.waitForSelector('#job-status[data-status="3"]');
  await page.waitForSelector('.group[data-status="9"][data-count="3"]:has-text("now")');

  step('rolling batches, each confirmed from the page');
  await page.click('header a[href="/console/run"]');
  await page.waitForSelector('#run-form[data-ready]');
  await page.fill('#targets', `${HOSTS[0]} ${HOSTS[1]}`);
  await page.waitForSelector('#match-count:has-text("2 of 2")');
  await page.fill('#job-name', 'console-rolling');
  await page.fill('#script', 'echo rolled');
  await page.fill('#rolling', '1');
  await page.selectOption('#rolling-mode', '3');
  await page.click('#execute');
  await page.waitForURL(/\/console\/jobs\/\d+$/);
  await page.waitForSelector('#job-status[data-status="7"]');
  await page.waitForSelector('.step:has-text("1/2") button.next-batch');
  await page.click('button.next-batch');
  await page.waitForSelector('#job-status[data-status="3"]');
  await page.waitForSelector('.group[data-status="9"][data-count="2"]');

  step('confirm one waiting job and reject another');
  // The first try of the event stream fails (a dropped connection): the page tries again.
  let dropped = 0;
  await page.route('**/events?*', (route) => { if (dropped++ === 0) route.abort('connectionreset'); else route.continue(); });
  await page.goto(`${URL_}/console/jobs/${TO_CONFIRM}`);
  await page.waitForSelector('#job-status[data-status="7"]');
  check(dropped >= 2, `the stream was opened again after the drop (${dropped})`);
  await page.unroute('**/events?*');
  await page.click('button.confirm');
  await page.waitForSelector('#job-status[data-status="3"]');
  await page.goto(`${URL_}/console/jobs/${TO_REJECT}`);
  await page.waitForSelector('#job-status[data-status="7"]');
  await page.click('button.reject');
  await page.waitForSelector('#job-status[data-status="13"]');

  step('send a file from the browser to a host');
  await page.click('header a[href="/console/files"]');
  await page.waitForSelector('#files-form[data-ready]');
  await page.setInputFiles('#files', { name: 'app.conf', mimeType: 'text/plain', buffer: Buffer.from('listen 8080\n') });
  await page.fill('#target-dir', FILES_DIR);
  await page.fill('#file-targets', HOSTS[0]);
  await page.waitForSelector('#file-match-count:has-text("1 of 1")');
  await page.click('#send-files');
  await page.waitForURL(/\/console\/jobs\/\d+$/);
  await page.waitForSelector('#job-status[data-status="3"]');
  check(readFileSync(`${FILES_DIR}/app.conf`, 'utf8') === 'listen 8080\n', 'the file arrived');
  await page.click('.group[data-status="9"]');
  await page.click('.hosts button.host >> nth=0');
  await page.waitForSelector('#log .line:has-text("app.conf")');

  step('job list');
  await page.click('header a[href="/console/jobs"]');
  await page.waitForSelector('#jobs tr[data-job]');
  const names = await page.$$eval('#jobs tbody td:nth-child(2)', (els) => els.map((e) => e.textContent));
  check(names.includes('console-hello') && names.includes('console-sleep'), `both jobs listed: ${names}`);
  await page.selectOption('#f-status', '3');
  await page.click('form button[type=submit]');
  await page.waitForFunction(() => [...document.querySelectorAll('#jobs tbody td:nth-child(2)')].every((e) => e.textContent !== 'console-sleep'));

  step('a job whose hosts answer differently: one group per answer, failures first');
  await page.click('header a[href="/console/run"]');
  await page.waitForSelector('#run-form[data-ready]');
  await page.fill('#targets', HOSTS.join(' '));
  await page.waitForSelector('#match-count:has-text("3 of 3")');
  await page.fill('#job-name', 'check-disks');
  // The script's path names its agent's state directory, which names the host.
  await page.fill('#script', [
    '#!/bin/bash',
    `case "$0" in *${HOSTS[2]}*) echo "/data is 97% full (limit 90%)"; df_used=97 ;; *) echo "/data is 41% full"; df_used=41 ;; esac`,
    'echo "checked by $(id -un)"',
    '[ "$df_used" -lt 90 ] || exit 2',
  ].join('\n'));
  await page.click('#execute');
  await page.waitForURL(/\/console\/jobs\/\d+$/);
  await page.waitForSelector('#job-status[data-status="4"]');
  const disksJob = page.url();
  await page.waitForSelector('.group[data-count="2"][data-status="9"]');
  const first = await page.getAttribute('.group >> nth=0', 'data-status');
  check(first !== '9', `the failed group comes first (${first})`);
  await page.click('.group >> nth=0');
  await page.click('.hosts button.host >> nth=0');
  await page.waitForSelector('#log .line');
  if (SHOT) {
    mkdirSync(dirname(SHOT), { recursive: true });
    await page.screenshot({ path: SHOT, fullPage: false });
    step(`screenshot: ${SHOT}`);
  }
  // In Chinese, statuses too.
  await page.selectOption('header select', 'zh');
  await page.waitForSelector('.group .badge:has-text("脚本返回值非零")');
  await page.waitForSelector('#job-status:has-text("执行失败")');
  await page.selectOption('header select', 'en');
  await page.waitForSelector('.group .badge:has-text("non-zero exit")');

  step("the fleet page in Chinese for a user who is not an admin");
  await page.selectOption('header select', 'zh');
  await page.click('header a[href="/console/fleet"]');
  await page.waitForSelector('#fleet-pending p');
  const notAdmin = await untranslated();
  check(notAdmin.length === 0, `the fleet page in Chinese has English: ${notAdmin.join(' | ')}`);
  await page.selectOption('header select', 'en');

  step('log out');
  await page.click('#logout');
  await page.waitForURL(/\/console\/login$/);
  await page.goto(`${URL_}/console/jobs`);
  await page.waitForURL(/\/console\/login$/);

  step('approve a template change as the second user');
  await logIn(APPROVER, APPROVER_PASSWORD);
  await page.click('header a[href="/console/approvals"]');
  const card = `.approval[data-template="${TEMPLATE}"]`;
  await page.waitForSelector(card);
  await page.fill(`${card} input.comment`, 'looks right');
  await page.click(`${card} button.approve`);
  await page.waitForSelector('#no-approvals');

  step('the template library shows the approved change');
  await page.click('header a[href="/console/library"]');
  await page.click(`#templates tr[data-template="${TEMPLATE}"]`);
  await page.waitForSelector('.version[data-version="1"] .badge.ok');
  await page.click('#tab-scripts');
  await page.waitForSelector('#scripts', { state: 'attached' });
  await page.click('#tab-cron');
  await page.waitForSelector('#crons', { state: 'attached' });

  step('a cron job made, started and deleted from the library');
  await page.waitForSelector('#cron-plan option', { state: 'attached' });
  await page.selectOption('#cron-plan', CRON_PLAN);
  await page.fill('#cron-name', 'nightly-console');
  await page.fill('#cron-expr', '30 2 * * *');
  await page.click('#cron-save');
  const cronRow = '#crons tr[data-cron="nightly-console"]';
  await page.waitForSelector(cronRow);
  await page.click(`${cronRow} .cron-toggle`);
  await page.waitForFunction((sel) => { const r = document.querySelector(sel); return r && r.children[2].textContent.trim() !== ''; }, cronRow);

  step('a cron job edited in place: name, schedule and a variable');
  await page.click(`${cronRow} .cron-edit`);
  await page.waitForSelector('#cron-edit [data-var="WHO"]');
  check((await page.inputValue('#cron-edit-expr')) === '30 2 * * *', 'the form shows the schedule');
  await page.fill('#cron-edit-name', 'nightly-console-2');
  await page.fill('#cron-edit-expr', '45 3 * * 1-5');
  await page.fill('#cron-edit [data-var="WHO"]', 'night-shift');
  await page.click('#cron-edit-save');
  const editedRow = '#crons tr[data-cron="nightly-console-2"]';
  await page.waitForSelector(`${editedRow} code:text-is("45 3 * * 1-5")`);
  check(!(await page.$(cronRow)), 'the old name is gone');
  // Read back from the server: the variable has its new value.
  await page.click(`${editedRow} .cron-edit`);
  await page.waitForFunction(() => document.querySelector('#cron-edit [data-var="WHO"]')?.value === 'night-shift');
  check((await page.inputValue('#cron-edit-name')) === 'nightly-console-2', 'the new name is stored');
  // Made a one-shot: no crontab, a time two days ahead (to the minute), shown in the list.
  const at = new Date(Date.now() + 2 * 86400000);
  at.setSeconds(0, 0);
  const p2 = (n) => String(n).padStart(2, '0');
  const day = `${at.getFullYear()}-${p2(at.getMonth() + 1)}-${p2(at.getDate())}`;
  await page.fill('#cron-edit-expr', '');
  await page.fill('#cron-edit-once', `${day}T${p2(at.getHours())}:${p2(at.getMinutes())}`);
  await page.click('#cron-edit-save');
  await page.waitForSelector(`${editedRow} code:text-is("${day} ${p2(at.getHours())}:${p2(at.getMinutes())}:00")`);
  await page.click(`${editedRow} .cron-delete`);
  await page.waitForSelector(editedRow, { state: 'detached' });

  step('read and verify the audit');
  await page.click('header a[href="/console/audit"]');
  await page.waitForSelector('#audit tr[data-action="login"]');
  await page.waitForSelector('#audit tr[data-action="login_failed"]');
  // Filtered: the approval of the template change, by business.
  await page.fill('#a-action', 'approve_template_version');
  await page.fill('#a-biz', '1');
  await page.click('#audit-search');
  await page.waitForFunction(() => { const rows = [...document.querySelectorAll('#audit tbody tr')]; return rows.length > 0 && rows.every((r) => r.dataset.action === 'approve_template_version'); });
  await page.click('#verify-chain');
  await page.waitForSelector('#chain-result .badge.ok');

  step('fleet and rules pages');
  await page.click('header a[href="/console/fleet"]');
  await page.waitForSelector('#fleet-biz td');
  const topo = await page.$$eval('#fleet-topology tbody tr', (rows) => rows.map((r) => [...r.children].map((c) => c.textContent).join(' ')));
  // Set 1 and module 2 show their names beside their ids; module 1 has none.
  check(topo.includes('1 prod (#1) 1 2 0') && topo.includes('1 prod (#1) mysql (#2) 1 0'), `hosts by topology: ${topo}`);
  await page.click('header a[href="/console/rules"]');
  await page.click('#check');
  await page.waitForSelector('#findings tr, #findings .badge');
  step('a dangerous rule added and deleted by an admin');
  const ruleExpr = 'shutdown\\s+-h';
  await page.fill('#rule-expr', ruleExpr);
  await page.fill('#rule-desc', 'no shutdown from a job');
  await page.click('#rule-add');
  const ruleRow = (expr) => [...document.querySelectorAll('tr[data-rule]')].find((r) => r.querySelector('code')?.textContent === expr);
  await page.waitForFunction(ruleRow, ruleExpr);
  step('a dangerous rule edited in place: expression, action, description');
  await page.evaluate((expr) => [...document.querySelectorAll('tr[data-rule]')].find((r) => r.querySelector('code')?.textContent === expr).querySelector('.rule-edit').click(), ruleExpr);
  await page.waitForSelector('tr.editing .rule-edit-expr');
  check((await page.inputValue('tr.editing .rule-edit-expr')) === ruleExpr, 'the form shows the expression');
  const editedExpr = '(shutdown|reboot)\\b';
  await page.fill('tr.editing .rule-edit-expr', editedExpr);
  await page.fill('tr.editing .rule-edit-desc', 'no shutdown or reboot from a job');
  await page.selectOption('tr.editing .rule-edit-action', '2');
  await page.click('tr.editing .rule-save');
  await page.waitForFunction(ruleRow, editedExpr);
  const edited = await page.evaluate((expr) => [...[...document.querySelectorAll('tr[data-rule]')].find((r) => r.querySelector('code')?.textContent === expr).children].map((c) => c.textContent), editedExpr);
  check(edited[1] === 'no shutdown or reboot from a job' && edited[2] === 'block', `the rule as edited: ${edited}`);
  check(!(await page.evaluate((expr) => [...document.querySelectorAll('tr[data-rule]')].some((r) => r.querySelector('code')?.textContent === expr), ruleExpr)), 'the old expression is gone');
  await page.evaluate((expr) => [...document.querySelectorAll('tr[data-rule]')].find((r) => r.querySelector('code')?.textContent === expr).querySelector('.rule-delete').click(), editedExpr);
  await page.waitForFunction((expr) => ![...document.querySelectorAll('tr[data-rule]')].some((r) => r.querySelector('code')?.textContent === expr), editedExpr);

  step('every page in Chinese: no English left in its headings, labels, buttons and headers');
  await page.selectOption('header select', 'zh');
  const pages = [['/console/run', '#run-form[data-ready]'], ['/console/files', '#files-form[data-ready]'], ['/console/jobs', '#jobs tr[data-job]'],
    [new URL(disksJob).pathname, '.group .badge'], ['/console/fleet', '#fleet-biz td'], ['/console/approvals', '#no-approvals'],
    ['/console/audit', '#audit tbody tr'], ['/console/library', `#templates tr[data-template="${TEMPLATE}"]`], ['/console/rules', '#check']];
  for (const [path, ready] of pages) {
    await page.evaluate((p) => { history.pushState(null, '', p); dispatchEvent(new PopStateEvent('popstate')); }, path);
    await page.waitForSelector(ready);
    const left = await untranslated();
    check(left.length === 0, `${path} in Chinese has English: ${left.join(' | ')}`);
  }
  // The library's other views: a template's history and the cron jobs.
  await page.click('header a[href="/console/library"]');
  await page.click(`#templates tr[data-template="${TEMPLATE}"]`);
  await page.waitForSelector('.version[data-version="1"]');
  await page.click('#tab-cron');
  await page.waitForSelector('#cron-plan option', { state: 'attached' });
  let left = await untranslated();
  check(left.length === 0, `the library in Chinese has English: ${left.join(' | ')}`);
  await page.selectOption('header select', 'en');

  check(consoleErrors.filter((e) => !e.includes('401') && !e.includes('ERR_CONNECTION_RESET')).length === 0, `no script errors: ${consoleErrors.join(' | ')}`);
  step('all passed');
} catch (e) {
  failed = true;
  console.error(`console test FAILED: ${e.stack || e}`);
  try { console.error(`at ${page.url()}:\n${(await page.textContent('body')).slice(0, 3000)}`); } catch { /* page gone */ }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
