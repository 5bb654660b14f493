// The approval queue: template changes waiting for review; approve or reject with a comment
// (the author of a change cannot approve it: the server says so).
import { shoal, scope } from '../api.js';
import { t } from '../i18n.js';
import { h, clear, errorBox, fmtTime } from '../ui.js';

export function show(main) {
  const sc = scope();
  const err = errorBox();
  const list = h('div', { id: 'approvals' });

  async function load() {
    try {
      const d = await shoal('approvals', sc);
      const rows = d.data || [];
      clear(list, rows.length ? rows.map((v) => {
        const comment = h('input', { type: 'text', class: 'comment', placeholder: t('comment') });
        const review = (ok) => async () => {
          err.show(null);
          try {
            await shoal(ok ? 'approvals/approve' : 'approvals/reject', { ...sc, name: v.template, version: v.version, comment: comment.value }, 'POST');
            load();
          } catch (ex) { err.show(ex); }
        };
        return h('div', { class: 'card approval', 'data-template': v.template },
          h('div', { class: 'row' }, h('strong', {}, v.template), h('span', {}, `${t('version')} ${v.version}`),
            h('span', { class: 'muted' }, `${t('author')}: ${v.author} · ${fmtTime(v.created_at)}`)),
          v.summary ? h('p', {}, v.summary) : null,
          h('table', {}, h('tbody', {}, (v.changes || []).map((c) => h('tr', {},
            h('td', {}, h('code', {}, c.path || c.op || '')), h('td', {}, typeof c.before === 'string' ? c.before : JSON.stringify(c.before ?? '')),
            h('td', {}, typeof c.after === 'string' ? c.after : JSON.stringify(c.after ?? '')))))),
          h('div', { class: 'row' }, comment,
            h('button', { class: 'approve', onclick: review(true) }, t('approve')),
            h('button', { class: 'danger reject', onclick: review(false) }, t('reject'))));
      }) : h('p', { class: 'muted', id: 'no-approvals' }, t('none')));
    } catch (ex) { err.show(ex); }
  }

  main.append(h('h1', {}, t('approvals')), err.el, list);
  load();
}
