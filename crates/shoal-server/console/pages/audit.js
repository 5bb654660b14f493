// Audit: search the event chain, and verify it.
import { shoal } from '../api.js';
import { t } from '../i18n.js';
import { h, clear, errorBox, fmtTime } from '../ui.js';

export function show(main) {
  const err = errorBox();
  const user = h('input', { type: 'text', id: 'a-user', placeholder: t('username') });
  const action = h('input', { type: 'text', id: 'a-action', placeholder: t('action') });
  const biz = h('input', { type: 'text', id: 'a-biz', placeholder: t('business'), size: 6 });
  const from = h('input', { type: 'datetime-local', id: 'a-from', title: t('from') });
  const to = h('input', { type: 'datetime-local', id: 'a-to', title: t('to') });
  const body = h('tbody');
  const result = h('div', { id: 'chain-result' });
  const more = h('div');
  let after = null;

  async function load(append) {
    err.show(null);
    try {
      const ms = (el) => (el.value ? new Date(el.value).getTime() : undefined);
      const b = biz.value.trim();
      const d = await shoal('audit', { username: user.value.trim(), action: action.value.trim(), bk_scope_type: b ? 'biz' : undefined, bk_scope_id: b || undefined,
        time_start: ms(from), time_end: ms(to), after_seq: append ? after : undefined, length: 200 });
      const rows = (d.data || []).map((e) => h('tr', { 'data-action': e.action },
        h('td', {}, e.seq), h('td', {}, fmtTime(e.time)), h('td', {}, e.username), h('td', {}, e.app_code),
        h('td', {}, e.action), h('td', {}, `${e.bk_scope_type || ''}${e.bk_scope_id ? ':' + e.bk_scope_id : ''}`), h('td', {}, e.resource_id),
        h('td', {}, h('code', {}, JSON.stringify(e.detail)))));
      if (append) body.append(...rows); else clear(body, rows);
      if (d.data && d.data.length) after = d.data[d.data.length - 1].seq;
      clear(more, d.data && d.data.length === 200 ? h('button', { class: 'plain', onclick: () => load(true) }, t('load_more')) : null);
    } catch (ex) { err.show(ex); }
  }

  main.append(h('h1', {}, t('audit')),
    h('form', { class: 'card row', onsubmit: (e) => { e.preventDefault(); after = null; load(false); } }, user, action, biz, h('span', {}, t('from'), ' ', from), h('span', {}, t('to'), ' ', to),
      h('button', { type: 'submit', id: 'audit-search' }, t('search')),
      h('button', { type: 'button', class: 'plain', id: 'verify-chain', onclick: async () => {
        try {
          const v = await shoal('audit/verify', {});
          clear(result, h('span', { class: v.ok ? 'badge ok' : 'badge bad' }, v.ok ? t('chain_ok', v.checked, v.head || '') : t('chain_bad', v.broken_at, v.reason || '')));
        } catch (ex) { err.show(ex); }
      } }, t('verify_chain')), result),
    err.el,
    h('table', { id: 'audit' }, h('thead', {}, h('tr', {}, [t('seq'), t('time'), t('username'), t('app'), t('action'), t('business'), t('resource'), t('detail')].map((c) => h('th', {}, c)))), body),
    more);
  load(false);
}
