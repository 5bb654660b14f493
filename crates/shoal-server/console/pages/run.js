// Quick execution: a script on hosts named by IP or host id, with a live count of matches.
import { v3, shoal, scope } from '../api.js';
import { t } from '../i18n.js';
import { h, clear, errorBox, b64 } from '../ui.js';

const LANGUAGES = [[1, 'Shell'], [2, 'Bat'], [3, 'Perl'], [4, 'Python'], [5, 'PowerShell']];

export async function show(main, { go }) {
  const sc = scope();
  const err = errorBox();
  const name = h('input', { type: 'text', id: 'job-name', value: 'quick-run', maxlength: 512 });
  const script = h('textarea', { id: 'script', rows: 12, spellcheck: 'false' }, '#!/bin/bash\necho hello from $(hostname)\n');
  const language = h('select', { id: 'language' }, LANGUAGES.map(([v, l]) => h('option', { value: v }, l)));
  const account = h('select', { id: 'account' });
  const targets = h('textarea', { id: 'targets', rows: 4, spellcheck: 'false', placeholder: '10.0.0.1\n10.0.0.2, 17' });
  const count = h('div', { id: 'match-count', class: 'muted' });
  const timeout = h('input', { type: 'number', id: 'timeout', value: 600, min: 1, max: 86400 });
  const submit = h('button', { type: 'submit', id: 'execute' }, t('submit'));
  let hosts = [];

  // Entries (IPs, "cloud:ip" or host ids) → hosts of this business.
  const resolve = () => {
    const byId = new Map(hosts.map((x) => [String(x.bk_host_id), x]));
    const byIp = new Map();
    for (const x of hosts) { byIp.set(x.ip, x); byIp.set(`${x.bk_cloud_id}:${x.ip}`, x); }
    const entries = targets.value.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
    const found = new Map(); const missing = [];
    for (const e of entries) {
      const x = byIp.get(e) || byId.get(e);
      if (x) found.set(x.bk_host_id, x); else missing.push(e);
    }
    return { entries, found: [...found.values()], missing };
  };
  const recount = () => {
    const r = resolve();
    clear(count, h('span', { class: 'count' }, t('matched', r.found.length, r.entries.length)),
      r.missing.length ? h('span', { class: 'error' }, ' · ', t('unmatched', r.missing.slice(0, 10).join(', ') + (r.missing.length > 10 ? ' …' : ''))) : null);
  };
  targets.addEventListener('input', recount);

  const form = h('form', { class: 'card', id: 'run-form', onsubmit: async (e) => {
    e.preventDefault();
    err.show(null);
    const r = resolve();
    if (!r.found.length) { err.show(t('matched', 0, r.entries.length)); return; }
    submit.disabled = true;
    try {
      const data = await v3('fast_execute_script', {
        ...sc, task_name: name.value.trim() || 'quick-run', script_content: b64(script.value), script_language: Number(language.value),
        account_id: Number(account.value), timeout: Number(timeout.value) || 600,
        target_server: { host_id_list: r.found.map((x) => x.bk_host_id) },
      });
      go(`/console/jobs/${data.job_instance_id}`);
    } catch (ex) {
      err.show(ex);
      submit.disabled = false;
    }
  } },
  h('h1', {}, t('run')),
  h('label', {}, t('job_name')), name,
  h('div', { class: 'row' }, h('div', {}, h('label', {}, t('language')), language), h('div', {}, h('label', {}, t('account')), account),
    h('div', {}, h('label', {}, t('timeout')), timeout)),
  h('label', {}, t('script')), script,
  h('label', {}, t('targets')), targets, count,
  err.el,
  h('div', { class: 'row' }, submit));
  main.append(form);

  try {
    const [acc, hs] = await Promise.all([
      v3('get_account_list', { ...sc, category: 1, length: 1000 }, 'GET'),
      shoal('hosts', { bk_biz_id: sc.bk_scope_id }),
    ]);
    for (const a of (acc.data || [])) account.append(h('option', { value: a.id }, `${a.alias} (${a.account})`));
    hosts = hs.data || [];
    recount();
    form.dataset.ready = '1';
  } catch (ex) {
    err.show(ex);
  }
}
