// File distribution: files from this computer uploaded once (generate_local_file_upload_url
// and a PUT each), then placed on the target hosts by one file job (fast_transfer_file).
import { v3, shoal, scope } from '../api.js';
import { t } from '../i18n.js';
import { h, clear, errorBox } from '../ui.js';
import { matchHosts } from '../hosts.js';

const UPLOADED = 2; // file_type of a local upload

export async function show(main, { go }) {
  const sc = scope();
  const err = errorBox();
  const files = h('input', { type: 'file', id: 'files', multiple: true });
  const dir = h('input', { type: 'text', id: 'target-dir', value: '/tmp/', placeholder: '/opt/app/conf/' });
  const account = h('select', { id: 'file-account' });
  const targets = h('textarea', { id: 'file-targets', rows: 4, spellcheck: 'false' });
  const count = h('div', { id: 'file-match-count', class: 'muted' });
  const progress = h('div', { id: 'upload-progress', class: 'muted' });
  const submit = h('button', { type: 'submit', id: 'send-files' }, t('send_files'));
  let hosts = [];
  const recount = () => {
    const r = matchHosts(hosts, targets.value);
    clear(count, h('span', { class: 'count' }, t('matched', r.found.size, r.entries.length)),
      r.missing.length ? h('span', { class: 'error' }, ' · ', t('unmatched', r.missing.slice(0, 10).join(', '))) : null);
  };
  targets.addEventListener('input', recount);

  const form = h('form', { class: 'card', id: 'files-form', onsubmit: async (e) => {
    e.preventDefault();
    err.show(null);
    const chosen = [...files.files];
    const r = matchHosts(hosts, targets.value);
    if (!chosen.length || !r.found.size) { err.show(t('matched', r.found.size, r.entries.length)); return; }
    submit.disabled = true;
    try {
      const slots = await v3('generate_local_file_upload_url', { ...sc, file_name_list: chosen.map((f) => f.name) });
      const paths = [];
      for (const f of chosen) {
        const slot = slots.url_map[f.name];
        progress.textContent = `${t('uploading')} ${f.name}`;
        const resp = await fetch(slot.upload_url, { method: 'PUT', body: f, credentials: 'same-origin' });
        if (!resp.ok) throw new Error(`${f.name}: ${await resp.text()}`);
        paths.push(slot.path);
      }
      progress.textContent = '';
      const job = await v3('fast_transfer_file', {
        ...sc, task_name: `files to ${dir.value.trim()}`, account_id: Number(account.value), file_target_path: dir.value.trim(),
        file_source_list: [{ file_list: paths, file_type: UPLOADED }], target_server: { host_id_list: [...r.found.keys()] },
      });
      go(`/console/jobs/${job.job_instance_id}`);
    } catch (ex) {
      err.show(ex);
      submit.disabled = false;
    }
  } },
  h('h1', {}, t('files')),
  h('label', {}, t('files_to_send')), files,
  h('div', { class: 'row' }, h('div', {}, h('label', {}, t('target_dir')), dir), h('div', {}, h('label', {}, t('account')), account)),
  h('label', {}, t('targets')), targets, count, progress, err.el,
  h('div', { class: 'row' }, submit));
  main.append(form);
  try {
    const [acc, hs] = await Promise.all([v3('get_account_list', { ...sc, category: 1, length: 1000 }, 'GET'), shoal('hosts', { bk_biz_id: sc.bk_scope_id })]);
    for (const a of acc.data || []) account.append(h('option', { value: a.id }, `${a.alias} (${a.account})`));
    hosts = hs.data || [];
    recount();
    form.dataset.ready = '1';
  } catch (ex) { err.show(ex); }
}
