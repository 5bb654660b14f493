// Quick execution: a script (typed, or taken from the library) on hosts named by IP or host id,
// chosen by topology, by label selector, or by a saved dynamic group — with a live count of the
// hosts matched — with parameters (sensitive or not), a timeout and rolling batches.
import { v3, shoal, scope } from '../api.js';
import { t } from '../i18n.js';
import { h, clear, errorBox, b64 } from '../ui.js';
import { matchHosts } from '../hosts.js';

const LANGUAGES = [[1, 'Shell'], [2, 'Bat'], [3, 'Perl'], [4, 'Python'], [5, 'PowerShell']];

export async function show(main, { go }) {
  const sc = scope();
  const err = errorBox();
  const name = h('input', { type: 'text', id: 'job-name', value: 'quick-run', maxlength: 512 });
  const script = h('textarea', { id: 'script', rows: 12, spellcheck: 'false' }, '#!/bin/bash\necho hello from $(hostname)\n');
  const language = h('select', { id: 'language' }, LANGUAGES.map(([v, l]) => h('option', { value: v }, l)));
  const fromLibrary = h('select', { id: 'library-script' }, h('option', { value: '' }, t('from_library')));
  const account = h('select', { id: 'account' });
  const targets = h('textarea', { id: 'targets', rows: 4, spellcheck: 'false', placeholder: '10.0.0.1\n10.0.0.2, 17' });
  const selector = h('input', { type: 'text', id: 'selector', placeholder: 'role=web,env!=prod' });
  const groups = h('div', { id: 'dynamic-groups', class: 'row' });
  const topo = h('div', { id: 'topology', class: 'topo' });
  const count = h('div', { id: 'match-count', class: 'muted' });
  const params = h('input', { type: 'text', id: 'params', placeholder: t('params') });
  const sensitive = h('input', { type: 'checkbox', id: 'sensitive' });
  const timeout = h('input', { type: 'number', id: 'timeout', value: 600, min: 1, max: 86400 });
  const rolling = h('input', { type: 'text', id: 'rolling', placeholder: '10% / 1 10 100%' });
  const rollingMode = h('select', { id: 'rolling-mode' }, [[1, t('rolling_stop')], [2, t('rolling_ignore')], [3, t('rolling_confirm')]].map(([v, l]) => h('option', { value: v }, l)));
  const submit = h('button', { type: 'submit', id: 'execute' }, t('submit'));
  let hosts = [];
  let leaves = new Map(); // "set/module" → its hosts
  let bySelector = null; // hosts the label selector matched (null: no selector)
  let selectorError = '';

  // Pasted entries (IPs, "cloud:ip" or host ids), checked topology nodes and the label
  // selector → the hosts of this business they name.
  const resolve = () => {
    const { entries, found, missing } = matchHosts(hosts, targets.value);
    // The tree's modules (its leaves) hold its hosts; a checked business or set has every
    // module under it checked.
    for (const box of topo.querySelectorAll('input[data-node="module"]:checked')) {
      for (const x of leaves.get(box.value) || []) found.set(x.bk_host_id, x);
    }
    for (const x of bySelector || []) found.set(x.bk_host_id, x);
    const dyn = [...groups.querySelectorAll('input:checked')].map((b) => b.value);
    return { entries, found: [...found.values()], missing, dyn };
  };
  const recount = () => {
    const r = resolve();
    clear(count, h('span', { class: 'count' }, t('matched', r.found.length, r.entries.length)),
      r.dyn.length ? h('span', {}, ' + ', t('dyn_groups', r.dyn.length)) : null,
      r.missing.length ? h('span', { class: 'error' }, ' · ', t('unmatched', r.missing.slice(0, 10).join(', ') + (r.missing.length > 10 ? ' …' : ''))) : null,
      selectorError ? h('span', { class: 'error' }, ' · ', selectorError) : null);
  };
  targets.addEventListener('input', recount);
  topo.addEventListener('change', (e) => { topoTick(e.target); recount(); });
  groups.addEventListener('change', recount);
  let pending = 0;
  selector.addEventListener('input', async () => {
    const mine = ++pending;
    const text = selector.value.trim();
    if (!text) { bySelector = null; selectorError = ''; recount(); return; }
    try {
      const d = await shoal('hosts', { bk_biz_id: sc.bk_scope_id, selector: text });
      if (mine !== pending) return;
      bySelector = d.data || []; selectorError = '';
    } catch (ex) {
      if (mine !== pending) return;
      bySelector = []; selectorError = ex.message;
    }
    recount();
  });
  fromLibrary.addEventListener('change', async () => {
    const [scriptId, versionId] = fromLibrary.value.split('/');
    if (!versionId) return;
    try {
      const v = await v3('get_script_version_detail', { ...sc, script_id: scriptId, id: versionId }, 'GET');
      script.value = v.content || '';
      if (v.script_language) language.value = v.script_language;
    } catch (ex) { err.show(ex); }
  });

  const form = h('form', { class: 'card', id: 'run-form', onsubmit: async (e) => {
    e.preventDefault();
    err.show(null);
    const r = resolve();
    if (!r.found.length && !r.dyn.length) { err.show(t('matched', 0, r.entries.length)); return; }
    const target = {};
    if (r.found.length) target.host_id_list = r.found.map((x) => x.bk_host_id);
    if (r.dyn.length) target.dynamic_group_list = r.dyn.map((id) => ({ id }));
    const body = {
      ...sc, task_name: name.value.trim() || 'quick-run', script_content: b64(script.value), script_language: Number(language.value),
      account_id: Number(account.value), timeout: Number(timeout.value) || 600, target_server: target,
    };
    if (params.value) { body.script_param = b64(params.value); body.is_param_sensitive = sensitive.checked ? 1 : 0; }
    if (rolling.value.trim()) body.rolling_config = { expression: rolling.value.trim(), mode: Number(rollingMode.value) };
    submit.disabled = true;
    try {
      const data = await v3('fast_execute_script', body);
      go(`/console/jobs/${data.job_instance_id}`);
    } catch (ex) {
      err.show(ex);
      submit.disabled = false;
    }
  } },
  h('h1', {}, t('run')),
  h('label', {}, t('job_name')), name,
  h('div', { class: 'row' }, h('div', {}, h('label', {}, t('language')), language), h('div', {}, h('label', {}, t('account')), account),
    h('div', {}, h('label', {}, t('timeout')), timeout), h('div', {}, h('label', {}, t('rolling')), rolling, ' ', rollingMode),
    h('div', {}, h('label', {}, t('library')), fromLibrary)),
  h('label', {}, t('script')), script,
  h('div', { class: 'row' }, h('div', {}, h('label', {}, t('params')), params), h('label', {}, sensitive, ' ', t('sensitive'))),
  h('label', {}, t('targets')), targets,
  h('label', {}, t('selector')), selector,
  h('label', {}, t('topology')), topo,
  h('label', {}, t('dynamic_groups')), groups,
  count,
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
    leaves = drawTopology(topo, sc.bk_scope_id, hosts);
    recount();
    form.dataset.ready = '1';
  } catch (ex) {
    err.show(ex);
  }
  // The optional lists: a failure here leaves the rest of the page usable.
  shoal('dynamic_groups', sc).then((d) => {
    clear(groups, (d.data || []).map((g) => h('label', { class: 'muted' }, h('input', { type: 'checkbox', value: g.id }), ` ${g.name}`)));
  }).catch(() => {});
  v3('get_script_list', { ...sc, length: 1000 }, 'GET').then((d) => {
    for (const s of d.data || []) if (s.online_script_version_id) fromLibrary.append(h('option', { value: `${s.id}/${s.online_script_version_id}` }, s.name));
  }).catch(() => {});
}

// The business's topology as its hosts report it — business → set → module, each with its
// name (`shoal host name`) and host count — as a tree of checkboxes. Answers the leaves:
// "set/module" → hosts.
function drawTopology(box, biz, hosts) {
  const sets = new Map(); // set id → { name, count, modules: Map(module id → { name, hosts }) }
  const leaves = new Map();
  for (const x of hosts) {
    const sk = x.set_id ?? ''; const mk = x.module_id ?? '';
    let set = sets.get(sk);
    if (!set) { set = { name: x.set_name, count: 0, modules: new Map() }; sets.set(sk, set); }
    set.count++;
    let mod = set.modules.get(mk);
    if (!mod) { mod = { name: x.module_name, hosts: [] }; set.modules.set(mk, mod); }
    mod.hosts.push(x);
    leaves.set(`${sk}/${mk}`, mod.hosts);
  }
  const byId = (a, b) => (a[0] === '' ? 1 : b[0] === '' ? -1 : a[0] - b[0]);
  const label = (kind, name, id) => (id === '' ? t('topo_none', t(kind)) : name ? `${name} (#${id})` : `${t(kind)} #${id}`);
  const node = (kind, value, text, count, children) => h('li', { class: `topo-${kind}` },
    h('label', { class: 'topo-node' }, h('input', { type: 'checkbox', 'data-node': kind, value }), ' ', text, ' ', h('span', { class: 'muted' }, `(${count})`)),
    children ? h('ul', {}, children) : null);
  clear(box, hosts.length ? h('ul', { class: 'topo-tree' }, node('biz', biz, `${t('business')} ${biz}`, hosts.length,
    [...sets.entries()].sort(byId).map(([sk, set]) => node('set', String(sk), label('set', set.name, sk), set.count,
      [...set.modules.entries()].sort(byId).map(([mk, mod]) => node('module', `${sk}/${mk}`, label('module', mod.name, mk), mod.hosts.length)))))) : h('span', { class: 'muted' }, t('none')));
  return leaves;
}

// A checkbox of the tree changed: everything under it follows, and every node above is
// checked when all under it are (half-checked when some are).
function topoTick(input) {
  if (!input.dataset.node) return;
  const li = input.closest('li');
  for (const c of li.querySelectorAll('ul input[type=checkbox]')) { c.checked = input.checked; c.indeterminate = false; }
  for (let up = li.parentElement.closest('li'); up; up = up.parentElement.closest('li')) {
    const mods = [...up.querySelectorAll('ul input[data-node="module"]')];
    const on = mods.filter((m) => m.checked).length;
    const box = up.querySelector(':scope > label > input');
    box.checked = on === mods.length; box.indeterminate = on > 0 && on < mods.length;
  }
}
