// Calls to Shoal's API with the console's session: the cookie (HttpOnly, sent by the
// browser) plus the session's CSRF token in X-Shoal-Csrf on every call.
export const session = { username: null, isAdmin: false, csrf: null };

export class ApiError extends Error {
  constructor(message, status, code) { super(message); this.status = status; this.code = code; }
}

let onUnauthorized = () => {};
export function whenUnauthorized(f) { onUnauthorized = f; }

function headers(json) {
  const h = { 'Accept': 'application/json' };
  if (session.csrf) h['X-Shoal-Csrf'] = session.csrf;
  if (json) h['Content-Type'] = 'application/json';
  const l = localStorage.getItem('shoal.lang');
  if (l) h['blueking-language'] = l === 'zh' ? 'zh-cn' : 'en';
  return h;
}

async function call(url, { method = 'GET', body, query } = {}) {
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
    url += (url.includes('?') ? '&' : '?') + q;
  }
  const resp = await fetch(url, { method, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  let env = null;
  try { env = await resp.json(); } catch { /* not JSON */ }
  if (resp.status === 401 && session.username) { session.username = null; onUnauthorized(); }
  if (!resp.ok || !env || env.result === false || (env.code !== undefined && env.code !== 0)) {
    throw new ApiError((env && env.message) || `HTTP ${resp.status}`, resp.status, env && env.code);
  }
  return env.data;
}

// JOB v3 APIs (`/api/v3/<name>`) and Shoal's own (`/api/shoal/v1/<path>`).
export const v3 = (name, params, method = 'POST') =>
  method === 'GET' ? call(`/api/v3/${name}`, { query: params }) : call(`/api/v3/${name}`, { method, body: params });
export const shoal = (path, params, method = 'GET') =>
  method === 'GET' ? call(`/api/shoal/v1/${path}`, { query: params }) : call(`/api/shoal/v1/${path}`, { method, body: params });

function take(d) { session.username = d.username; session.isAdmin = !!d.is_admin; session.csrf = d.csrf_token; return d; }

export async function login(username, password) {
  return take(await call('/api/shoal/v1/console/login', { method: 'POST', body: { username, password } }));
}

// After a reload: the cookie is still there; ask who it is (and the CSRF token).
export async function restore() {
  try { return take(await call('/api/shoal/v1/console/session')); } catch { return null; }
}

export async function logout() {
  try { await call('/api/shoal/v1/console/logout', { method: 'POST', body: {} }); } finally {
    session.username = null; session.csrf = null; session.isAdmin = false;
  }
}

// A server-sent event stream read with fetch (EventSource cannot send the CSRF header);
// reconnects after a drop until `stop()` or an `end` event. `onEvent(name, data)`.
export function stream(url, onEvent, onState = () => {}) {
  const ctl = new AbortController();
  let stopped = false;
  (async () => {
    let delay = 500;
    while (!stopped) {
      try {
        const resp = await fetch(url, { headers: headers(false), credentials: 'same-origin', signal: ctl.signal });
        if (!resp.ok) {
          let msg = `HTTP ${resp.status}`;
          try { const env = await resp.json(); msg = env.message || msg; } catch { /* not JSON */ }
          if (resp.status === 401) onUnauthorized();
          onEvent('error', { message: msg });
          if (resp.status < 500) return;
          throw new Error(msg);
        }
        onState('live');
        delay = 500;
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let at;
          while ((at = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, at);
            buf = buf.slice(at + 2);
            let name = 'message'; const data = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) name = line.slice(7);
              else if (line.startsWith('data: ')) data.push(line.slice(6));
            }
            if (!data.length) continue;
            onEvent(name, JSON.parse(data.join('\n')));
            // The job is over: the server closes the stream; let go of it here too.
            if (name === 'end') { stopped = true; reader.cancel().catch(() => {}); onState('ended'); return; }
          }
        }
      } catch (e) {
        if (stopped || ctl.signal.aborted) return;
      }
      if (stopped) return;
      onState('reconnecting');
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  })();
  return { stop() { stopped = true; ctl.abort(); } };
}

export function scope() {
  return { bk_scope_type: 'biz', bk_scope_id: localStorage.getItem('shoal.biz') || '1' };
}
