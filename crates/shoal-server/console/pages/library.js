// Script library, templates (history with structured changes, rollback) and cron jobs of the
// business: the same APIs the CLI and BlueKing callers use, with the user's grants.
import { v3, shoal, scope } from '../api.js';
import { t } from '../i18n.js';
import { h, clear, errorBox, fmtTime } from '../ui.js';

const show_ = (v) => (typeof v === 'string' ? v : JSON.stringify(v ?? ''));

export function show(main) {
  const sc = scope();
  const err = errorBox();
  const body = h('div', { id: 'library' });
  const detail = h('div', { id: 'library-detail' });
  const tabs = [['templates', templates], ['scripts', scripts], ['cron', crons]];
  const bar = h('div', { class: 'row' }, tabs.map(([k, f]) => h('button', { class: 'plain', id: `tab-${k}`, onclick: () => { clear(detail); f(); } }, t(k))));
  main.append(h('h1', {}, t('library')), bar, err.el, h('div', { class: 'split' }, h('div', { class: 'card' }, body), h('div', { class: 'card' }, detail)));
  const act = (f) => async () => { err.show(null); try { await f(); } catch (ex) { err.show(ex); } };

  async function templates() {
    try {
      const d = await shoal('templates', sc);
      clear(body, h('table', { id: 'templates' }, h('thead', {}, h('tr', {}, [t('name'), t('version'), t('author'), ''].map((c) => h('th', {}, c)))),
        h('tbody', {}, (d.data || []).map((x) => h('tr', { class: 'click', 'data-template': x.name, onclick: () => history(x) },
          h('td', {}, x.name), h('td', {}, `${x.current_version ?? '-'} / ${x.latest_version}`), h('td', {}, x.last_modify_user || x.creator),
          h('td', {}, x.needs_approval ? h('span', { class: 'badge wait' }, t('approvals')) : null))))));
    } catch (ex) { err.show(ex); }
  }

  async function history(tpl) {
    try {
      const d = await shoal('templates/history', { ...sc, name: tpl.name });
      clear(detail, h('h2', {}, tpl.name), (d.versions || []).map((v) => h('div', { class: 'card version', 'data-version': v.version },
        h('div', { class: 'row' }, h('strong', {}, `${t('version')} ${v.version}`), h('span', { class: `badge ${v.state === 'current' ? 'ok' : v.state === 'pending' ? 'wait' : ''}` }, t(`state_${v.state}`)),
          h('span', { class: 'muted' }, `${v.author} · ${fmtTime(v.created_at)}`),
          v.state !== 'current' && v.state !== 'pending' && v.state !== 'rejected'
            ? h('button', { class: 'plain rollback', onclick: act(async () => { await shoal('templates/rollback', { ...sc, name: tpl.name, version: v.version }, 'POST'); history(tpl); templates(); }) }, t('rollback')) : null),
        v.summary ? h('p', {}, v.summary) : null,
        v.review_comment ? h('p', { class: 'muted' }, `${v.reviewer}: ${v.review_comment}`) : null,
        h('table', {}, h('tbody', {}, (v.changes || []).map((c) => h('tr', {}, h('td', {}, h('code', {}, c.path || c.op || '')), h('td', {}, show_(c.before)), h('td', {}, show_(c.after)))))))));
    } catch (ex) { err.show(ex); }
  }

  async function scripts() {
    try {
      const d = await v3('get_script_list', { ...sc, length: 1000 }, 'GET');
      clear(body, h('table', { id: 'scripts' }, h('tbody', {}, (d.data || []).map((s) => h('tr', { class: 'click', onclick: () => versions(s) },
        h('td', {}, s.name), h('td', {}, s.last_modify_user || s.creator), h('td', {}, fmtTime(s.last_modify_time)))))));
    } catch (ex) { err.show(ex); }
  }

  async function versions(s) {
    try {
      const d = await v3('get_script_version_list', { ...sc, script_id: s.id, return_script_content: true, length: 1000 }, 'GET');
      const list = d.data || [];
      const status = { 0: t('script_draft'), 1: t('script_online'), 2: t('script_offline'), 3: t('script_disabled') };
      clear(detail, h('h2', {}, s.name), list.map((v, i) => h('div', { class: 'card' },
        h('div', { class: 'row' }, h('strong', {}, v.version), h('span', { class: 'badge' }, status[v.status] ?? v.status), h('span', { class: 'muted' }, v.version_desc || ''),
          v.status !== 1 ? h('button', { class: 'plain', onclick: act(async () => { await v3('publish_script_version', { ...sc, script_id: s.id, script_version_id: v.id }); versions(s); }) }, t('publish')) : null,
          v.status !== 3 ? h('button', { class: 'plain', onclick: act(async () => { await v3('disable_script_version', { ...sc, script_id: s.id, script_version_id: v.id }); versions(s); }) }, t('disable')) : null),
        h('pre', { class: 'out' }, v.content || ''),
        list[i + 1] ? diff(list[i + 1].content || '', v.content || '') : null)));
    } catch (ex) { err.show(ex); }
  }

  async function crons() {
    try {
      const [d, plans] = await Promise.all([v3('get_cron_list', { ...sc, length: 1000 }, 'GET'), v3('get_job_plan_list', { ...sc, length: 1000 }, 'GET')]);
      const plan = h('select', { id: 'cron-plan' }, (plans.data || []).map((p) => h('option', { value: p.id }, `${p.name} (#${p.id})`)));
      const name = h('input', { id: 'cron-name', placeholder: t('name') });
      const expr = h('input', { id: 'cron-expr', value: '0 2 * * *', placeholder: t('cron_expr'), title: t('cron_expr') });
      const save = h('button', { id: 'cron-save', onclick: act(async () => {
        await v3('save_cron', { ...sc, job_plan_id: Number(plan.value), name: name.value, expression: expr.value });
        crons();
      }) }, t('save'));
      clear(body, h('h2', {}, t('new_cron')), h('div', { class: 'row' }, plan, name, expr, save),
        h('table', { id: 'crons' }, h('thead', {}, h('tr', {}, [t('name'), t('expression'), t('next_fire'), '', ''].map((c) => h('th', {}, c)))),
          h('tbody', {}, (d.data || []).map((c) => h('tr', { 'data-cron': c.name },
            h('td', {}, c.name), h('td', {}, h('code', {}, c.expression || fmtTime((c.execute_time || 0) * 1000))), h('td', {}, c.next_fire_time ? fmtTime(c.next_fire_time * 1000) : ''),
            h('td', {}, h('button', { class: 'plain cron-toggle', onclick: act(async () => { await v3('update_cron_status', { ...sc, id: c.id, status: c.status === 1 ? 2 : 1 }); crons(); }) },
              c.status === 1 ? t('disable') : t('enable'))),
            h('td', {}, h('button', { class: 'plain cron-edit', onclick: act(() => editCron(c)) }, t('edit')), ' ',
              h('button', { class: 'plain cron-delete', onclick: act(async () => { await v3('delete_cron', { ...sc, id: c.id }); crons(); }) }, t('delete'))))))));
    } catch (ex) { err.show(ex); }
  }

  // A cron edited in place: its name, schedule and the values of its plan's variables (a
  // password is shown masked and kept unless a new one is typed; host lists are kept).
  async function editCron(c) {
    const [d, plan] = await Promise.all([v3('get_cron_detail', { ...sc, id: c.id }, 'GET'),
      v3('get_job_plan_detail', { ...sc, job_plan_id: c.job_plan_id }, 'GET')]);
    const current = new Map((d.global_var_list || []).map((v) => [v.name, v]));
    const name = h('input', { type: 'text', id: 'cron-edit-name', value: d.name });
    const expr = h('input', { type: 'text', id: 'cron-edit-expr', value: d.expression || '', placeholder: t('cron_expr'), title: t('cron_expr') });
    // Or once, at a time (a one-shot's time; a schedule given wins).
    const localTime = (s) => { const x = new Date(s * 1000 - new Date(s * 1000).getTimezoneOffset() * 60000); return x.toISOString().slice(0, 16); };
    const once = h('input', { type: 'datetime-local', id: 'cron-edit-once', value: d.execute_time ? localTime(d.execute_time) : '', title: t('run_once_at') });
    const vars = (plan.global_var_list || []).map((v) => {
      const cur = current.get(v.name);
      const password = v.type === 4;
      const input = v.type === 3 ? null : h('input', { type: password ? 'password' : 'text', 'data-var': v.name, autocomplete: 'off',
        value: !password && cur && cur.value !== null ? cur.value : '', placeholder: password ? (cur ? t('unchanged') : '') : (v.value ?? '') });
      return { v, cur, input };
    });
    const given = () => vars.flatMap(({ v, cur, input }) => {
      if (!input) return cur && cur.server ? [{ name: v.name, server: cur.server }] : [];
      if (v.type === 4 && !input.value) return cur ? [{ name: v.name, value: cur.value }] : [];
      return input.value !== '' || cur ? [{ name: v.name, value: input.value }] : [];
    });
    const save = h('button', { id: 'cron-edit-save', onclick: act(async () => {
      const body = { ...sc, id: c.id, name: name.value, global_var_list: given() };
      if (expr.value.trim()) body.expression = expr.value.trim();
      else if (once.value) body.execute_time = Math.floor(new Date(once.value).getTime() / 1000);
      await v3('save_cron', body);
      clear(detail);
      crons();
    }) }, t('save'));
    clear(detail, h('h2', {}, `${t('edit_cron')} · ${d.name} (#${d.id})`),
      h('div', { id: 'cron-edit' },
        h('label', {}, t('name')), name,
        h('label', {}, t('cron_expr')), expr,
        h('label', {}, t('run_once_at')), once,
        vars.length ? h('label', {}, t('variables')) : null,
        vars.length ? h('table', { id: 'cron-edit-vars' }, h('tbody', {}, vars.map(({ v, input }) => h('tr', {},
          h('td', {}, h('code', {}, v.name)), h('td', {}, v.description || ''),
          h('td', {}, input || h('span', { class: 'muted' }, t('host_list_kept'))))))) : null,
        h('div', { class: 'row' }, save, h('button', { class: 'plain', onclick: () => clear(detail) }, t('cancel')))));
  }

  templates();
}

// Lines removed and added between two versions (a plain longest-common-subsequence diff,
// enough for scripts; very long ones are compared line by line instead).
function diff(a, b) {
  const x = a.split('\n'); const y = b.split('\n');
  const rows = [];
  if (x.length * y.length > 4e6) {
    for (let i = 0; i < Math.max(x.length, y.length); i++) if (x[i] !== y[i]) { if (x[i] !== undefined) rows.push(['-', x[i]]); if (y[i] !== undefined) rows.push(['+', y[i]]); }
  } else {
    const n = x.length; const m = y.length;
    const l = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) l[i][j] = x[i] === y[j] ? l[i + 1][j + 1] + 1 : Math.max(l[i + 1][j], l[i][j + 1]);
    let i = 0; let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && x[i] === y[j]) { i++; j++; } else if (j < m && (i === n || l[i][j + 1] >= l[i + 1][j])) rows.push(['+', y[j++]]); else rows.push(['-', x[i++]]);
    }
  }
  if (!rows.length) return null;
  return h('pre', { class: 'out diff' }, rows.map(([k, s]) => `${k} ${s}\n`).join(''));
}
