// Dangerous-statement rules, and a "check this script" box (check_script).
import { v3, session } from '../api.js';
import { t } from '../i18n.js';
import { h, clear, errorBox, b64 } from '../ui.js';

export function show(main) {
  const err = errorBox();
  const rules = h('tbody');
  const script = h('textarea', { id: 'check-script', rows: 8, spellcheck: 'false' }, 'rm -rf /\n');
  const language = h('select', {}, [[1, 'Shell'], [2, 'Bat'], [3, 'Perl'], [4, 'Python'], [5, 'PowerShell']].map(([v, l]) => h('option', { value: v }, l)));
  const findings = h('div', { id: 'findings' });
  main.append(h('h1', {}, t('rules')), err.el,
    h('div', { class: 'card' }, h('h2', {}, t('check_script')), h('div', { class: 'row' }, language), script,
      h('div', { class: 'row' }, h('button', { id: 'check', onclick: async () => {
        err.show(null);
        try {
          const f = await v3('check_script', { script_language: Number(language.value), content: b64(script.value) });
          clear(findings, f.length ? h('table', {}, h('tbody', {}, f.map((x) => h('tr', {}, h('td', {}, x.line), h('td', {}, h('code', {}, x.line_content)),
            h('td', {}, x.description || ''), h('td', {}, x.level))))) : h('p', { class: 'badge ok' }, t('no_findings')));
        } catch (ex) { err.show(ex); }
      } }, t('check_script'))), findings),
    session.isAdmin ? newRule() : null,
    h('div', { class: 'card' }, h('table', {}, h('thead', {}, h('tr', {}, [t('expression'), t('description'), t('action'), t('status'), ''].map((c) => h('th', {}, c)))), rules)));
  // A new rule (an admin's): a regular expression matched line by line, for the language
  // chosen above; JOB saves it disabled.
  function newRule() {
    const expr = h('input', { id: 'rule-expr', placeholder: t('expression') });
    const desc = h('input', { id: 'rule-desc', placeholder: t('description') });
    const action = h('select', { id: 'rule-action' }, [[1, t('scan')], [2, t('intercept')]].map(([v, l]) => h('option', { value: v }, l)));
    return h('div', { class: 'card' }, h('h2', {}, t('new_rule')), h('div', { class: 'row' }, expr, desc, action,
      h('button', { id: 'rule-add', onclick: async () => {
        err.show(null);
        try {
          await v3('create_dangerous_rule', { expression: expr.value, description: desc.value, action: Number(action.value), script_language_list: [Number(language.value)] });
          load();
        } catch (ex) { err.show(ex); }
      } }, t('add'))));
  }
  const ACTION = { 1: t('scan'), 2: t('intercept') };
  // A rule's row, or the form that edits it in place (expression, description, action; its
  // languages and status stay as they are).
  const row = (r) => h('tr', { 'data-rule': r.id },
    h('td', {}, h('code', {}, r.expression)), h('td', {}, r.description), h('td', {}, ACTION[r.action] || r.action),
    h('td', {}, h('span', { class: r.status === 1 ? 'badge ok' : 'badge' }, r.status === 1 ? t('enabled') : t('disabled'))),
    // Changing rules is an admin's; the server refuses anyone else.
    session.isAdmin ? h('td', {}, h('button', { class: 'plain', onclick: async () => {
      try { await v3(r.status === 1 ? 'disable_dangerous_rule' : 'enable_dangerous_rule', { id: r.id }); load(); } catch (ex) { err.show(ex); }
    } }, r.status === 1 ? t('disable') : t('enable')),
    h('button', { class: 'plain rule-edit', onclick: (e) => e.target.closest('tr').replaceWith(editRow(r)) }, t('edit')),
    h('button', { class: 'plain rule-delete', onclick: async () => {
      try { await v3('delete_dangerous_rule', { id: r.id }); load(); } catch (ex) { err.show(ex); }
    } }, t('delete'))) : null);
  const editRow = (r) => {
    const expr = h('input', { type: 'text', class: 'rule-edit-expr', value: r.expression, 'aria-label': t('expression') });
    const desc = h('input', { type: 'text', class: 'rule-edit-desc', value: r.description || '', 'aria-label': t('description') });
    const action = h('select', { class: 'rule-edit-action', 'aria-label': t('action') },
      [[1, t('scan')], [2, t('intercept')]].map(([v, l]) => h('option', { value: v, selected: r.action === v }, l)));
    const tr = h('tr', { 'data-rule': r.id, class: 'editing' }, h('td', {}, expr), h('td', {}, desc), h('td', {}, action), h('td', {}),
      h('td', {}, h('button', { class: 'rule-save', onclick: async () => {
        err.show(null);
        try {
          await v3('update_dangerous_rule', { id: r.id, expression: expr.value, description: desc.value, action: Number(action.value),
            script_language_list: r.script_language_list });
          load();
        } catch (ex) { err.show(ex); }
      } }, t('save')), ' ', h('button', { class: 'plain', onclick: () => tr.replaceWith(row(r)) }, t('cancel'))));
    return tr;
  };
  const load = () => v3('get_dangerous_rule_list', {}, 'GET').then((d) => {
    clear(rules, (Array.isArray(d) ? d : d.data || []).map(row));
  }).catch((ex) => err.show(ex));
  load();
}
