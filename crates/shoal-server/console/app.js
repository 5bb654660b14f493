// The console's shell: header (pages, business, language, user, logout) and history
// routing; each page is a module loaded when first shown.
import { session, restore, logout, whenUnauthorized, scope } from './api.js';
import { t, lang, setLang } from './i18n.js';
import { h, clear } from './ui.js';

const ROUTES = [
  [/^\/console\/login$/, 'login'],
  [/^\/console\/?$/, 'run'],
  [/^\/console\/run$/, 'run'],
  [/^\/console\/jobs$/, 'jobs'],
  [/^\/console\/jobs\/(\d+)$/, 'job'],
  [/^\/console\/fleet$/, 'fleet'],
  [/^\/console\/audit$/, 'audit'],
  [/^\/console\/approvals$/, 'approvals'],
  [/^\/console\/rules$/, 'rules'],
  [/^\/console\/library$/, 'library'],
  [/^\/console\/files$/, 'files'],
];

const NAV = [['run', '/console/run'], ['files', '/console/files'], ['jobs', '/console/jobs'], ['fleet', '/console/fleet'], ['approvals', '/console/approvals'], ['audit', '/console/audit'], ['library', '/console/library'], ['rules', '/console/rules']];

let leave = null; // the shown page's clean-up (closing its event stream)
let renders = 0;

export function go(path, replace = false) {
  if (replace) history.replaceState(null, '', path); else history.pushState(null, '', path);
  render();
}

function header(page) {
  const top = document.getElementById('top');
  if (!session.username) { clear(top); return; }
  const biz = h('input', { class: 'biz', type: 'text', value: scope().bk_scope_id, title: t('business'), 'aria-label': t('business'),
    onchange: (e) => { localStorage.setItem('shoal.biz', e.target.value.trim() || '1'); render(); } });
  const langSel = h('select', { 'aria-label': t('language'), onchange: (e) => { setLang(e.target.value); render(); } },
    h('option', { value: 'zh', selected: lang() === 'zh' }, '中文'), h('option', { value: 'en', selected: lang() === 'en' }, 'English'));
  clear(top,
    h('a', { class: 'brand', href: '/console/run', 'data-nav': true }, 'Shoal'),
    NAV.map(([k, href]) => h('a', { href, 'data-nav': true, class: page === k || (k === 'jobs' && page === 'job') ? 'on' : '' }, t(k))),
    h('span', { class: 'spacer' }),
    h('span', {}, t('business'), ' ', biz),
    langSel,
    h('span', { id: 'who' }, session.username),
    h('button', { class: 'plain', id: 'logout', onclick: async () => { await logout(); go('/console/login'); } }, t('logout')));
}

async function render() {
  if (leave) { try { leave(); } catch { /* already gone */ } leave = null; }
  const path = location.pathname;
  let page = 'run'; let args = [];
  for (const [re, name] of ROUTES) {
    const m = path.match(re);
    if (m) { page = name; args = m.slice(1); break; }
  }
  if (!session.username && page !== 'login') {
    sessionStorage.setItem('shoal.after', path);
    history.replaceState(null, '', '/console/login');
    page = 'login';
  }
  const seq = ++renders;
  const mod = await import(`./pages/${page}.js`);
  if (seq !== renders) return; // another navigation came first
  // Header and page change together, so nothing of the previous page is seen with the new header.
  header(page);
  const main = clear(document.getElementById('main'));
  leave = (await mod.show(main, { args, go })) || null;
}

document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a[data-nav]');
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  go(a.getAttribute('href'));
});
window.addEventListener('popstate', render);
whenUnauthorized(() => { if (location.pathname !== '/console/login') go('/console/login'); });

(async () => {
  await restore();
  render();
})();
