// Job list with filters: status, time range, name (get_job_instance_list).
import { v3, scope } from '../api.js';
import { t, runStatus } from '../i18n.js';
import { h, clear, errorBox, fmtTime, fmtDuration, runClass } from '../ui.js';

const PAGE = 50;
const DAY = 86400000;

function local(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

export function show(main, { go }) {
  const sc = scope();
  const err = errorBox();
  const status = h('select', { id: 'f-status' }, h('option', { value: '' }, t('any')),
    [1, 2, 3, 4, 7, 8, 10, 11, 13].map((s) => h('option', { value: s }, runStatus(s))));
  const from = h('input', { type: 'datetime-local', id: 'f-from', value: local(Date.now() - 7 * DAY) });
  const to = h('input', { type: 'datetime-local', id: 'f-to', value: local(Date.now() + 60000) });
  const name = h('input', { type: 'text', id: 'f-name', placeholder: t('name') });
  const body = h('tbody');
  const pager = h('div', { class: 'row' });
  let start = 0;

  async function load() {
    err.show(null);
    try {
      const d = await v3('get_job_instance_list', { ...sc, status: status.value || undefined, name: name.value.trim() || undefined,
        create_time_start: new Date(from.value).getTime(), create_time_end: new Date(to.value).getTime(), start, length: PAGE }, 'GET');
      clear(body, (d.data || []).map((j) => h('tr', { class: 'click', 'data-job': j.job_instance_id, onclick: () => go(`/console/jobs/${j.job_instance_id}`) },
        h('td', {}, h('a', { href: `/console/jobs/${j.job_instance_id}`, 'data-nav': true }, `#${j.job_instance_id}`)),
        h('td', {}, j.name),
        h('td', {}, h('span', { class: `badge ${runClass(j.status)}` }, runStatus(j.status))),
        h('td', {}, j.operator),
        h('td', {}, fmtTime(j.create_time)),
        h('td', {}, fmtDuration(j.total_time)))));
      clear(pager,
        h('button', { class: 'plain', disabled: start === 0, onclick: () => { start = Math.max(0, start - PAGE); load(); } }, t('previous')),
        h('span', { class: 'muted' }, `${d.total ? start + 1 : 0}–${start + (d.data || []).length} / ${d.total}`),
        h('button', { class: 'plain', disabled: start + PAGE >= d.total, onclick: () => { start += PAGE; load(); } }, t('next')));
    } catch (ex) { err.show(ex); }
  }

  main.append(h('h1', {}, t('jobs')),
    h('form', { class: 'card row', onsubmit: (e) => { e.preventDefault(); start = 0; load(); } },
      h('span', {}, t('status'), ' ', status), h('span', {}, t('from'), ' ', from), h('span', {}, t('to'), ' ', to), name,
      h('button', { type: 'submit' }, t('filter'))),
    err.el,
    h('table', { id: 'jobs' }, h('thead', {}, h('tr', {}, ['#', t('name'), t('status'), t('operator'), t('created'), t('duration')].map((c) => h('th', {}, c)))), body),
    pager);
  load();
}
