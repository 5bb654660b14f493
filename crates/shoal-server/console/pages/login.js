import { login } from '../api.js';
import { t } from '../i18n.js';
import { h, errorBox } from '../ui.js';

export function show(main, { go }) {
  const err = errorBox();
  const user = h('input', { type: 'text', name: 'username', autocomplete: 'username', required: true });
  const pass = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const form = h('form', { class: 'card login', onsubmit: async (e) => {
    e.preventDefault();
    err.show(null);
    try {
      await login(user.value.trim(), pass.value);
      const after = sessionStorage.getItem('shoal.after');
      sessionStorage.removeItem('shoal.after');
      go(after && after !== '/console/login' ? after : '/console/run', true);
    } catch (ex) {
      err.show(ex.status === 401 ? t('login_failed') : ex);
    }
  } },
  h('h1', {}, 'Shoal'),
  h('label', {}, t('username'), user),
  h('label', {}, t('password'), pass),
  err.el,
  h('button', { type: 'submit', id: 'login' }, t('login')));
  main.append(form);
  user.focus();
}
