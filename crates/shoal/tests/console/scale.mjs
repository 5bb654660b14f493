// The job page on a job of 50,000 hosts (written to the store the server reads by
// crates/shoal/tests/console.rs): its first load is small and gzip'd; the page stays
// responsive and its DOM bounded — groups, a virtual list of a group's hosts scrolled to its
// last host and filtered, a host's log searched; quick execution picks among the 50,000 by
// topology with a live count. Exits non-zero on the first failed expectation.
import { chromium } from 'playwright-core';

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const URL_ = env('SHOAL_URL');
const USER = env('SHOAL_USER'); const PASSWORD = env('SHOAL_PASSWORD');
const JOB = env('SHOAL_JOB');
const HOSTS = Number(env('SHOAL_HOST_COUNT'));
const FAILED = Number(env('SHOAL_FAILED_COUNT'));
const OTHER = Number(env('SHOAL_OTHER_COUNT'));
const OTHER_IP = env('SHOAL_OTHER_IP');
const LAST_IP = env('SHOAL_LAST_IP');
// The biggest group: the hosts that succeeded with the most common answer.
const BIG_GROUP = HOSTS - FAILED - OTHER;
const T = 120_000;
// What a click may take before the page shows its answer: generous (a shared, loaded CI
// machine), yet far below what 50,000 DOM rows cost.
const CLICK_MS = 3_000;
// Rows of a virtual list in the page at a time: the visible ones and a margin, never all.
const MAX_ROWS = 200;
// Elements in the whole page: a job of any size is a few groups of at most 100 listed hosts.
const MAX_ELEMENTS = 3_000;

function check(cond, what) { if (!cond) throw new Error(`expected: ${what}`); }
const step = (s) => console.log(`scale test: ${s}`);

const browser = await chromium.launch({
  executablePath: process.env.SHOAL_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
});
let failed = false;
const page = await browser.newPage({ viewport: { width: 1360, height: 900 }, locale: 'en-US' });
page.setDefaultTimeout(T);
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(String(e)));

const elements = () => page.evaluate(() => document.getElementsByTagName('*').length);
const rows = () => page.$$eval('.all-hosts-list .vrow', (els) => els.length);
// Clicks `sel` in the page and answers the milliseconds until the frame after the click's
// work was painted.
const timedClick = (sel) => page.evaluate(async (s) => {
  const t0 = performance.now();
  document.querySelector(s).click();
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  return performance.now() - t0;
}, sel);

try {
  step('log in');
  await page.goto(`${URL_}/console/login`);
  await page.fill('input[name=username]', USER);
  await page.fill('input[name=password]', PASSWORD);
  await page.click('#login');
  await page.waitForSelector('#who');

  step('the job page loaded cold: under 200 KB over the wire, gzip\'d');
  {
    const cold = await browser.newContext({ locale: 'en-US' });
    const login = await cold.request.post(`${URL_}/api/shoal/v1/console/login`, { data: { username: USER, password: PASSWORD } });
    check(login.ok(), `logged in (${login.status()})`);
    const p = await cold.newPage();
    p.setDefaultTimeout(T);
    // Bytes over the wire per request, as the browser counts them (headers and encoded
    // body), also for the event stream, which stays open until the page leaves.
    const cdp = await cold.newCDPSession(p);
    await cdp.send('Network.enable');
    const wire = new Map();
    cdp.on('Network.responseReceived', (e) => {
      const hd = Object.fromEntries(Object.entries(e.response.headers).map(([k, v]) => [k.toLowerCase(), v]));
      wire.set(e.requestId, { path: new URL(e.response.url).pathname, status: e.response.status, encoding: hd['content-encoding'], bytes: e.response.encodedDataLength });
    });
    // A body not encoded is its length on the wire (the event stream's chunks report no
    // encoded length while it is open).
    cdp.on('Network.dataReceived', (e) => { const w = wire.get(e.requestId); if (w) w.bytes += w.encoding ? e.encodedDataLength : Math.max(e.encodedDataLength, e.dataLength); });
    cdp.on('Network.loadingFinished', (e) => { const w = wire.get(e.requestId); if (w) w.bytes = Math.max(w.bytes, e.encodedDataLength); });
    await p.goto(`${URL_}/console/jobs/${JOB}`);
    await p.waitForSelector(`.group[data-status="9"][data-count="${BIG_GROUP}"]`);
    await p.waitForSelector('#live[data-state="ended"]');
    const got = [...wire.values()];
    const total = got.reduce((a, x) => a + x.bytes, 0);
    const plain = got.filter((x) => x.path.startsWith('/console') && !x.path.endsWith('.svg') && x.status === 200 && x.encoding !== 'gzip').map((x) => x.path);
    step(`  ${got.length} requests, ${total} bytes: ${got.map((x) => `${x.path} ${x.bytes}`).join(', ')}`);
    check(got.some((x) => x.path.endsWith('/pages/job.js')) && got.some((x) => x.path.endsWith('/events') && x.bytes > 1000), 'the page and its event stream were loaded');
    check(total < 200 * 1024, `the first load is under 200 KB over the wire (${total} bytes)`);
    check(plain.length === 0, `every console asset came gzip'd (not: ${plain.join(', ')})`);
    await cold.close();
  }

  step(`the job of ${HOSTS} hosts: a few groups`);
  await page.goto(`${URL_}/console/jobs/${JOB}`);
  await page.waitForSelector('#job-status[data-status="4"]');
  const okGroup = `.group[data-status="9"][data-count="${BIG_GROUP}"]`;
  await page.waitForSelector(okGroup);
  await page.waitForSelector(`.group[data-status="9"][data-count="${OTHER}"]:has-text("nginx/1.25.3")`);
  await page.waitForSelector(`.group[data-status="104"][data-count="${FAILED}"]`);
  check((await page.getAttribute('.group >> nth=0', 'data-status')) === '104', 'the failed hosts come first');
  const closed = await elements();
  check(closed < MAX_ELEMENTS, `a bounded page (${closed} elements)`);

  step('the big group opens at once, its first hosts listed');
  const openMs = await timedClick(okGroup);
  check(openMs < CLICK_MS, `the group opened in ${openMs.toFixed(0)} ms`);
  await page.waitForSelector(`${okGroup}.sel .hosts button.host`);
  const listed = (await page.$$(`${okGroup} .hosts button.host`)).length;
  check(listed > 0 && listed <= 100, `at most 100 hosts listed (${listed})`);

  step('all its hosts: a virtual list');
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.url().includes('/api/shoal/v1/job_group_hosts')),
    page.click(`${okGroup} button.all-hosts`),
  ]);
  await page.waitForSelector('.all-hosts-list .vrow');
  const wire = (await answer.request().sizes()).responseBodySize;
  const raw = (await answer.body()).length;
  step(`  ${BIG_GROUP} hosts of the group: ${raw} bytes of JSON, ${wire} over the wire`);
  check((await answer.headerValue('content-encoding')) === 'gzip' && wire * 5 < raw, "the API's answer came gzip'd");
  await page.waitForSelector(`.all-hosts-box:has-text("All ${BIG_GROUP} hosts of this group")`);
  let n = await rows();
  check(n > 0 && n < MAX_ROWS, `only the visible rows of ${BIG_GROUP} are in the page (${n})`);
  const open = await elements();
  check(open < MAX_ELEMENTS, `a bounded page with the list open (${open} elements)`);

  step('scrolled to the end: the last host');
  await page.$eval('.all-hosts-list', (el) => { el.scrollTop = el.scrollHeight; });
  await page.waitForSelector(`.all-hosts-list .vrow:text-matches("^${LAST_IP.replaceAll('.', '\\.')} ")`);
  n = await rows();
  check(n > 0 && n < MAX_ROWS, `still only the visible rows (${n})`);

  step('filtered by IP: none of the other answer, one host of this one');
  await page.fill('.all-hosts-search', OTHER_IP);
  await page.waitForSelector(`.all-hosts-box:has-text("0 of ${BIG_GROUP} hosts")`);
  check((await rows()) === 0, `${OTHER_IP} answered otherwise: not in this group`);
  await page.fill('.all-hosts-search', LAST_IP);
  await page.waitForFunction((ip) => {
    const r = [...document.querySelectorAll('.all-hosts-list .vrow')];
    return r.length === 1 && r[0].textContent.startsWith(`${ip} `);
  }, LAST_IP);

  step("that host's log, searched");
  await page.click('.all-hosts-list .vrow >> nth=0');
  await page.waitForSelector('#log .line:has-text("nginx/1.24.0")');
  check(await page.isVisible('.all-hosts-search'), 'the list stays open beside the log');
  check((await page.inputValue('.all-hosts-search')) === LAST_IP, 'and keeps its filter');
  await page.fill('#log-search', 'nginx/1.24');
  await page.waitForSelector('#log-info:has-text("1/1")');
  await page.fill('#log-search', 'emerg');
  await page.waitForSelector('#log-info:has-text("0/1")');

  step('another click answers as fast');
  const failedGroup = '.group[data-status="104"]';
  const againMs = await timedClick(failedGroup);
  check(againMs < CLICK_MS, `the failed group opened in ${againMs.toFixed(0)} ms`);
  await page.waitForSelector(`${failedGroup}.sel .hosts button.host`);
  check((await page.$$(`${failedGroup} .hosts button.host`)).length === FAILED, `its ${FAILED} hosts listed`);
  await page.waitForSelector(`${failedGroup} pre.out:has-text("[emerg]")`);

  step(`quick execution among ${HOSTS} hosts: the topology tree and a live count`);
  await page.click('header a[href="/console/run"]');
  await page.waitForSelector('#run-form[data-ready]');
  await page.waitForSelector(`#topology .topo-biz > label:has-text("(${HOSTS})")`);
  await page.waitForSelector(`#topology .topo-set > label:has-text("edge (#1) (${HOSTS / 10})")`);
  await page.waitForSelector('#topology .topo-module > label:has-text("nginx (#1)")');
  check((await page.$$('#topology input[data-node="set"]')).length === 10, 'ten sets');
  check((await page.$$('#topology input[data-node="module"]')).length === 50, 'fifty modules');
  const allMs = await timedClick('#topology input[data-node="biz"]');
  await page.waitForSelector(`#match-count:has-text("${HOSTS} of 0")`);
  check(allMs < CLICK_MS, `the whole business counted in ${allMs.toFixed(0)} ms`);
  const setMs = await timedClick('#topology input[data-node="set"][value="1"]');
  await page.waitForSelector(`#match-count:has-text("${HOSTS - HOSTS / 10} of 0")`);
  check(setMs < CLICK_MS, `a set taken out in ${setMs.toFixed(0)} ms`);
  const pageElements = await elements();
  check(pageElements < MAX_ELEMENTS, `a bounded page (${pageElements} elements)`);

  step(`a job on the ${HOSTS - HOSTS / 10} hosts picked: no agent answers, one group`);
  await page.fill('#job-name', 'topology-run');
  await page.fill('#script', 'true');
  await page.click('#execute');
  await page.waitForURL(/\/console\/jobs\/\d+$/);
  await page.waitForSelector(`.group[data-status="310"][data-count="${HOSTS - HOSTS / 10}"]`);
  await page.waitForSelector('#job-status[data-status="4"]');

  // The login page asks who is logged in first: a 401 before logging in is expected.
  check(consoleErrors.filter((e) => !e.includes('401')).length === 0, `no script errors: ${consoleErrors.join(' | ')}`);
  step(`  clicks answered in ${[openMs, againMs, allMs, setMs].map((x) => x.toFixed(0)).join(', ')} ms`);
  step('all passed');
} catch (e) {
  failed = true;
  console.error(`scale test FAILED: ${e.stack || e}`);
  try { console.error(`at ${page.url()}:\n${(await page.textContent('body')).slice(0, 3000)}`); } catch { /* page gone */ }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
