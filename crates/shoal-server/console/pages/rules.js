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
    h('div', { class: 'card' }, h('table', {}, h('thead', {}, h('tr', {}, [t('expression'), t('description'), t('action'), t('status')].map((c) => h('th', {}, c)))), rules)));
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
  const load = () => v3('get_dangerous_rule_list', {}, 'GET').then((d) => {
    clear(rules, (Array.isArray(d) ? d : d.data || []).map((r) => h('tr', { 'data-rule': r.id },
      h('td', {}, h('code', {}, r.expression)), h('td', {}, r.description), h('td', {}, ACTION[r.action] || r.action),
      h('td', {}, h('span', { class: r.status === 1 ? 'badge ok' : 'badge' }, r.status === 1 ? t('enable') : t('disable'))),
      // Changing rules is an admin's; the server refuses anyone else.
      session.isAdmin ? h('td', {}, h('button', { class: 'plain', onclick: async () => {
        try { await v3(r.status === 1 ? 'disable_dangerous_rule' : 'enable_dangerous_rule', { id: r.id }); load(); } catch (ex) { err.show(ex); }
      } }, r.status === 1 ? t('disable') : t('enable')),
      h('button', { class: 'plain rule-delete', onclick: async () => {
        try { await v3('delete_dangerous_rule', { id: r.id }); load(); } catch (ex) { err.show(ex); }
      } }, t('delete'))) : null)));
  }).catch((ex) => err.show(ex));
  load();
}
