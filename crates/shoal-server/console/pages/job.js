// A job, live: its steps and their host results grouped (status + exit code + identical
// output), updated from the server's event stream; a group opens to its hosts, a host to
// its log (virtualised: only the visible lines are in the page, so a 5 MB log stays fast).
import { v3, shoal, stream, scope } from '../api.js';
import { t, runStatus, hostStatus } from '../i18n.js';
import { h, clear, errorBox, fmtTime, fmtDuration, runClass, hostClass, virtualList } from '../ui.js';

const LINE_HEIGHT = 18;
const ACTIVE = new Set([2, 7, 15]); // running, waiting for a user, between rolling batches

export function show(main, { args }) {
  const jobId = Number(args[0]);
  const sc = scope();
  const err = errorBox();
  const head = h('div', { class: 'card', id: 'job-head' });
  const steps = h('div', { id: 'steps' });
  const logPanel = h('div', { class: 'card', id: 'log-panel', hidden: true });
  const liveState = h('span', { class: 'muted', id: 'live' });
  main.append(head, err.el, h('div', { class: 'split' }, steps, logPanel));
  let snap = null;
  const sel = { step: null, group: null, host: null };
  // Every host of a big group, fetched on demand: step id + group key → hosts.
  const allHosts = new Map();
  // Hosts listed per group in each snapshot (the server's default unless the page's URL asks).
  const perGroup = new URLSearchParams(location.search).get('hosts_per_group');

  let es = null;
  let ended = false;
  let left = false; // the page was left: nothing more to read
  // A finished job's stream has ended; an operation may revive the job (a retry, a skip): listen again.
  const operate = async (fn) => {
    err.show(null);
    try { await fn(); if (ended) listen(); } catch (ex) { err.show(ex); }
  };
  const jobOp = (code) => operate(() => v3('operate_job_instance', { ...sc, job_instance_id: jobId, operation_code: code }));
  const stepOp = (step, code) => operate(() => v3('operate_step_instance', { ...sc, job_instance_id: jobId, step_instance_id: step, operation_code: code }));

  function drawHead() {
    const s = snap;
    clear(head,
      h('div', { class: 'row' },
        h('h1', {}, s.name, ' ', h('span', { class: 'muted' }, `#${s.job_instance_id}`)),
        h('span', { class: `badge ${runClass(s.status)}`, id: 'job-status', 'data-status': s.status }, runStatus(s.status)),
        liveState,
        h('span', { class: 'spacer', style: null }),
        ACTIVE.has(s.status) ? h('button', { class: 'danger', id: 'terminate', onclick: () => jobOp(1) }, t('terminate')) : null),
      h('div', { class: 'kv muted' },
        [t('operator'), s.operator || '', t('created'), fmtTime(s.create_time), t('duration'), fmtDuration(s.total_time)].map((x) => h('span', {}, x))));
  }

  function stepButtons(step) {
    const out = [];
    const jobStuck = snap.status === 4 || snap.status === 11 || snap.status === 8;
    if (step.type === 3 && step.status === 7) {
      out.push(h('button', { class: 'confirm', onclick: () => stepOp(step.step_instance_id, 6) }, t('confirm')));
      out.push(h('button', { class: 'danger reject', onclick: () => stepOp(step.step_instance_id, 9) }, t('reject')));
    }
    if (step.total_batch && step.status === 7) {
      out.push(h('button', { class: 'next-batch', onclick: () => stepOp(step.step_instance_id, 13) }, t('next_batch')));
    }
    if (step.status === 11 && snap.status === 11) {
      out.push(h('button', { class: 'plain next-step', onclick: () => stepOp(step.step_instance_id, 11) }, t('next_step')));
    }
    if ((step.status === 4 || step.status === 11 || step.status === 8) && jobStuck && step.type !== 3) {
      out.push(h('button', { class: 'retry-failed', onclick: () => stepOp(step.step_instance_id, 2) }, t('retry_failed')));
      out.push(h('button', { class: 'plain', onclick: () => stepOp(step.step_instance_id, 8) }, t('retry_all')));
      if (step.status === 4) out.push(h('button', { class: 'plain', onclick: () => stepOp(step.step_instance_id, 3) }, t('ignore_error')));
      out.push(h('button', { class: 'plain skip', onclick: () => stepOp(step.step_instance_id, 12) }, t('skip')));
    }
    return out;
  }

  function drawSteps() {
    const kept = []; // open host lists, put back where they were scrolled to
    clear(steps, snap.steps.map((step) => {
      const groups = step.groups.map((g) => {
        const on = sel.step === step.step_instance_id && sel.group === g.key;
        const box = h('div', { class: `group${on ? ' sel' : ''}`, 'data-status': g.status, 'data-count': g.host_count,
          onclick: () => { sel.step = step.step_instance_id; sel.group = on ? null : g.key; drawSteps(); } },
        h('div', { class: 'row' },
          h('span', { class: `badge ${hostClass(g.status)}` }, hostStatus(g.status, g.status_label)),
          h('span', {}, `${t('exit_code')} ${g.exit_code}`),
          h('span', { class: 'count' }, `${g.host_count} ${t(g.host_count === 1 ? 'host' : 'hosts')}`)),
        g.output ? h('pre', { class: 'out' }, g.output) : (g.status !== 5 && g.status !== 7 ? h('div', { class: 'muted' }, t('no_output')) : null),
        g.output_truncated ? h('div', { class: 'muted' }, t('output_cut')) : null);
        if (on) {
          box.append(h('div', { class: 'hosts' },
            g.hosts.map((x) => h('button', { class: sel.host === x.bk_host_id ? 'sel host' : 'host', 'data-host': x.bk_host_id,
              onclick: (e) => { e.stopPropagation(); openLog(step, x); } }, x.ip || `#${x.bk_host_id}`)),
            g.host_count > g.hosts.length && !allHosts.has(`${step.step_instance_id}/${g.key}`)
              ? h('button', { class: 'plain all-hosts', onclick: (e) => { e.stopPropagation(); loadAll(step, g); } }, t('all_hosts', g.host_count)) : null));
          const all = allHosts.get(`${step.step_instance_id}/${g.key}`);
          if (all) {
            box.append(all.el); kept.push(all);
            if (all.hosts.length !== g.host_count) refresh(step.step_instance_id, g.key, all);
          }
        }
        return box;
      });
      return h('div', { class: 'card step', 'data-step': step.step_instance_id },
        h('div', { class: 'row' },
          h('strong', {}, step.name || `${t('step')} ${step.step_instance_id}`),
          h('span', { class: `badge ${runClass(step.status)}`, 'data-status': step.status }, runStatus(step.status)),
          step.host_count ? h('span', { class: 'muted' }, `${step.finished_hosts}/${step.host_count} ${t('hosts')}`) : null,
          step.total_batch ? h('span', { class: 'muted' }, `${step.current_batch}/${step.total_batch}`) : null,
          stepButtons(step)),
        groups);
    }));
    for (const all of kept) { all.list.scrollTop = all.top; all.list.repaint(); }
  }

  // A group lists its first hosts; all of them (the hosts with its status, exit code and
  // output) come on demand, shown as a virtual list however many there are.
  async function loadAll(step, g) {
    err.show(null);
    try {
      const d = await shoal('job_group_hosts', { ...sc, job_instance_id: jobId, step_instance_id: step.step_instance_id, key: g.key });
      const entry = hostList(step, d.hosts || []);
      entry.at = Date.now();
      allHosts.set(`${step.step_instance_id}/${g.key}`, entry);
      drawSteps();
    } catch (ex) { err.show(ex); }
  }

  // An open list whose group grew or shrank in a snapshot (a live job) is read again, at most
  // every 2 s; a later snapshot's count decides whether the next read is still needed.
  function refresh(stepId, key, all) {
    if (all.loading || all.timer || left) return;
    const wait = 2000 - (Date.now() - (all.at || 0));
    if (wait > 0) {
      all.timer = setTimeout(() => {
        all.timer = null;
        const step = snap.steps.find((s) => s.step_instance_id === stepId);
        const g = step && step.groups.find((x) => x.key === key);
        if (g && g.host_count !== all.hosts.length) refresh(stepId, key, all);
      }, wait);
      return;
    }
    all.loading = true;
    all.at = Date.now();
    shoal('job_group_hosts', { ...sc, job_instance_id: jobId, step_instance_id: stepId, key })
      .then((d) => all.set(d.hosts || []))
      .catch(() => { /* the next snapshot tries again */ })
      .finally(() => { all.loading = false; });
  }

  // A group's every host as a virtual list (however many, only the visible rows are in the
  // page), with a filter by IP or host id. Made once and kept across snapshots, scrolled
  // where it was.
  function hostList(step, hosts) {
    const entry = { top: 0, hosts };
    const count = h('span', { class: 'muted' }, t('all_in_group', hosts.length));
    const list = virtualList(hosts, 26, (x) => h('div', { class: 'vrow', 'data-host': x.bk_host_id, onclick: () => openLog(step, x) },
      `${x.ip || ''} (#${x.bk_host_id})`), 'vlist all-hosts-list');
    list.addEventListener('scroll', () => { entry.top = list.scrollTop; });
    const show = (keepScroll) => {
      const q = filter.value.trim();
      const all = entry.hosts;
      const shown = q ? all.filter((x) => (x.ip || '').includes(q) || String(x.bk_host_id) === q) : all;
      count.textContent = q ? t('hosts_matched', shown.length, all.length) : t('all_in_group', all.length);
      list.setItems(shown, keepScroll);
      if (!keepScroll) entry.top = 0;
    };
    const filter = h('input', { type: 'search', class: 'all-hosts-search', placeholder: t('filter_hosts'), oninput: () => show(false) });
    // The group's hosts read again: the same filter, the same place in the list.
    entry.set = (fresh) => { entry.hosts = fresh; show(true); };
    // Clicks inside the list are the list's, not the group's (which would close).
    entry.el = h('div', { class: 'all-hosts-box', onclick: (e) => e.stopPropagation() }, h('div', { class: 'row' }, count, filter), list);
    entry.list = list;
    return entry;
  }

  // The open log: its host and step, and when it was last read (a running host's log is read
  // again as the job changes, at most once a second).
  let open = null;
  let blobUrl = null;

  async function readLog(stepId, host) {
    const d = await v3('get_job_instance_ip_log', { ...sc, job_instance_id: jobId, step_instance_id: stepId, bk_host_id: host.bk_host_id }, 'GET');
    // A file step's log is its files' progress lines.
    return d.file_logs ? d.file_logs.map((f) => f.log_content).join('\n') : (d.log_content || '');
  }

  async function openLog(step, host) {
    sel.host = host.bk_host_id;
    open = { step: step.step_instance_id, host, at: Date.now(), busy: false };
    drawSteps();
    logPanel.hidden = false;
    clear(logPanel, h('h2', {}, `${t('log')} · ${host.ip} (#${host.bk_host_id})`), h('p', { class: 'muted' }, t('loading')));
    try {
      showLog(host, await readLog(step.step_instance_id, host));
    } catch (ex) {
      clear(logPanel, h('div', { class: 'error' }, ex.message));
    }
  }

  // Called on every snapshot: while the open log's step runs, its log follows.
  async function follow() {
    if (!open || open.busy || open.timer) return;
    const step = snap.steps.find((x) => x.step_instance_id === open.step);
    if (!step || (step.status !== 2 && step.status !== 15 && open.done)) return;
    const wait = 1000 - (Date.now() - open.at);
    if (wait > 0) {
      const mine = open;
      mine.timer = setTimeout(() => { mine.timer = null; if (open === mine) follow(); }, wait);
      return;
    }
    open.busy = true;
    open.at = Date.now();
    const mine = open;
    try {
      const text = await readLog(mine.step, mine.host);
      if (open === mine && text !== mine.text) showLog(mine.host, text, true);
      mine.done = step.status !== 2 && step.status !== 15;
    } catch { /* the next snapshot tries again */ } finally { mine.busy = false; }
  }

  function showLog(host, text, again = false) {
    const before = again ? logPanel.querySelector('#log') : null;
    const atEnd = before && before.scrollTop + before.clientHeight >= before.scrollHeight - 20;
    const searched = again ? (logPanel.querySelector('#log-search') || {}).value || '' : '';
    if (open) open.text = text;
    const lines = text.split('\n');
    if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
    let shown = lines.map((_, i) => i);
    let term = '';
    const box = h('div', { class: 'log', id: 'log', tabindex: 0 });
    const spacer = h('div', { class: 'spacer' });
    box.append(spacer);
    const info = h('span', { class: 'muted', id: 'log-info' });
    const paint = () => {
      spacer.style.height = `${shown.length * LINE_HEIGHT}px`;
      // A short log gets a short box; a long one scrolls in at most 420 px.
      box.style.height = `${Math.max(3, Math.min(shown.length, 23)) * LINE_HEIGHT + 4}px`;
      const first = Math.max(0, Math.floor(box.scrollTop / LINE_HEIGHT) - 10);
      const last = Math.min(shown.length, first + Math.ceil(box.clientHeight / LINE_HEIGHT) + 30);
      const rows = [];
      for (let i = first; i < last; i++) {
        const row = h('div', { class: term ? 'line hit' : 'line' }, lines[shown[i]]);
        row.style.top = `${i * LINE_HEIGHT}px`; // CSSOM, not a style attribute: the CSP allows no inline style
        rows.push(row);
      }
      clear(spacer, rows);
      info.textContent = t('lines', term ? `${shown.length}/${lines.length}` : lines.length);
    };
    let raf = 0;
    box.addEventListener('scroll', () => { if (!raf) raf = requestAnimationFrame(() => { raf = 0; paint(); }); });
    const search = h('input', { type: 'search', id: 'log-search', placeholder: t('search'), oninput: (e) => {
      term = e.target.value;
      shown = [];
      for (let i = 0; i < lines.length; i++) if (!term || lines[i].includes(term)) shown.push(i);
      box.scrollTop = 0;
      paint();
    } });
    if (blobUrl) URL.revokeObjectURL(blobUrl);
    const url = blobUrl = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
    const dl = h('a', { href: url, download: `job-${jobId}-host-${host.bk_host_id}.log`, id: 'log-download' }, t('download'));
    clear(logPanel, h('h2', {}, `${t('log')} · ${host.ip} (#${host.bk_host_id})`), h('div', { class: 'row' }, search, info, dl), box);
    if (searched) { search.value = searched; search.dispatchEvent(new Event('input')); }
    if (atEnd) box.scrollTop = box.scrollHeight;
    else if (before) box.scrollTop = before.scrollTop;
    paint();
  }

  function listen() {
    ended = false;
    if (es) es.stop();
    const q = new URLSearchParams({ ...sc });
    if (perGroup) q.set('hosts_per_group', perGroup);
    es = stream(`/api/shoal/v1/jobs/${jobId}/events?${q}`,
    (name, data) => {
      if (name === 'snapshot') {
        snap = data;
        drawHead();
        drawSteps();
        follow();
      } else if (name === 'error') {
        err.show(data.message || `error ${data.code}`);
      }
    },
    (state) => {
      if (state === 'ended') ended = true;
      liveState.textContent = state === 'live' ? `● ${t('live')}` : state === 'ended' ? t('ended') : t('reconnecting');
      liveState.dataset.state = state;
    });
  }
  listen();
  return () => { left = true; es.stop(); };
}
