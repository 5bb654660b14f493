// Fleet overview: hosts alive / lost by business, agent versions, agents waiting for
// acceptance (admins).
import { shoal, session } from '../api.js';
import { t } from '../i18n.js';
import { h, clear, errorBox, fmtTime } from '../ui.js';

export async function show(main) {
  const err = errorBox();
  const byBiz = h('tbody'); const versions = h('tbody'); const pending = h('div', { id: 'fleet-pending' }); const byTopo = h('tbody');
  main.append(h('h1', {}, t('fleet')), err.el,
    h('div', { class: 'split' },
      h('div', { class: 'card' }, h('table', { id: 'fleet-biz' }, h('thead', {}, h('tr', {}, [t('business'), t('alive'), t('lost')].map((c) => h('th', {}, c)))), byBiz)),
      h('div', { class: 'card' }, h('h2', {}, t('versions')), h('table', { id: 'fleet-versions' }, versions))),
    h('div', { class: 'card' }, h('h2', {}, t('topology')),
      h('table', { id: 'fleet-topology' }, h('thead', {}, h('tr', {}, [t('business'), t('set'), t('module'), t('alive'), t('lost')].map((c) => h('th', {}, c)))), byTopo)),
    h('div', { class: 'card' }, h('h2', {}, t('pending_agents')), pending));
  try {
    const d = await shoal('hosts', {});
    const biz = new Map(); const ver = new Map(); const topo = new Map();
    // A set or module shows its name (`shoal host name`) beside its id when it has one.
    const named = (name, id) => (id === null || id === undefined ? '-' : name ? `${name} (#${id})` : String(id));
    for (const x of d.data || []) {
      const tk = `${x.bk_biz_id}/${x.set_id ?? '-'}/${x.module_id ?? '-'}`;
      const tc = topo.get(tk) || { alive: 0, lost: 0, set: named(x.set_name, x.set_id), module: named(x.module_name, x.module_id) };
      if (x.alive) tc.alive++; else tc.lost++;
      topo.set(tk, tc);
      const b = biz.get(x.bk_biz_id) || { alive: 0, lost: 0 };
      if (x.alive) b.alive++; else b.lost++;
      biz.set(x.bk_biz_id, b);
      ver.set(x.agent_version || '?', (ver.get(x.agent_version || '?') || 0) + 1);
    }
    clear(byBiz, [...biz.entries()].sort((a, b) => a[0] - b[0]).map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', {}, v.alive), h('td', {}, v.lost))));
    clear(byTopo, [...topo.entries()].sort().map(([k, v]) => h('tr', {}, h('td', {}, k.split('/')[0]), h('td', {}, v.set), h('td', {}, v.module),
      h('td', {}, v.alive), h('td', {}, v.lost))));
    clear(versions, [...ver.entries()].map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', {}, v))));
  } catch (ex) { err.show(ex); }
  if (!session.isAdmin) { clear(pending, h('p', { class: 'muted' }, t('admins_only'))); return; }
  const loadPending = async () => {
    try {
      const p = await shoal('agents/pending', {});
      const rows = p.data || [];
      clear(pending, rows.length ? h('table', {}, h('tbody', {}, rows.map((a) => h('tr', {},
        h('td', {}, a.ip), h('td', {}, a.hostname || ''), h('td', {}, a.agent_id || ''), h('td', {}, fmtTime(a.last_seen)),
        h('td', {}, h('button', { onclick: async () => { try { await shoal('agents/accept', { bk_host_id: a.bk_host_id }, 'POST'); loadPending(); } catch (ex) { err.show(ex); } } }, t('accept'))))))) : h('p', { class: 'muted' }, t('none')));
    } catch (ex) { err.show(ex); }
  };
  loadPending();
}
