// DOM helpers. Text from the server (names, logs, output) only ever goes in as text, never
// as HTML: `h` sets textContent for strings.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export function fmtTime(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined) return '';
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(2)} s`;
}

// Badge class for a job / step run status.
export function runClass(s) {
  if (s === 3 || s === 5 || s === 6) return 'ok';
  if (s === 4 || s === 8 || s === 9 || s === 11 || s === 13 || s === 14) return 'bad';
  if (s === 2 || s === 10) return 'run';
  return 'wait';
}

// Badge class for a host status (9 success, 3 succeeded before, 7 running, 5 waiting).
export function hostClass(s) {
  if (s === 9 || s === 3) return 'ok';
  if (s === 7) return 'run';
  if (s === 5) return 'wait';
  return 'bad';
}

export function errorBox() {
  const el = h('div', { class: 'error', role: 'alert' });
  return { el, show: (e) => { el.textContent = e ? (e.message || String(e)) : ''; } };
}

export function b64(text) {
  const bytes = new TextEncoder().encode(text);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

// A list of any length with only its visible rows in the page: `row(item, i)` makes one
// row element (fixed height `rowHeight` px). Answers the scrolling box; `box.setItems(list)`
// shows another list (a filter's result) in it, from the top unless `keepScroll`.
export function virtualList(items, rowHeight, row, cls = 'vlist') {
  const box = h('div', { class: cls, tabindex: 0 });
  const inner = h('div', { class: 'spacer' });
  box.append(inner);
  const paint = () => {
    inner.style.height = `${items.length * rowHeight}px`;
    const first = Math.max(0, Math.floor(box.scrollTop / rowHeight) - 10);
    const last = Math.min(items.length, first + Math.ceil((box.clientHeight || 400) / rowHeight) + 30);
    const rows = [];
    for (let i = first; i < last; i++) {
      const el = row(items[i], i);
      el.style.top = `${i * rowHeight}px`; // CSSOM, not a style attribute: the CSP allows no inline style
      rows.push(el);
    }
    clear(inner, rows);
  };
  let raf = 0;
  box.addEventListener('scroll', () => { if (!raf) raf = requestAnimationFrame(() => { raf = 0; paint(); }); });
  box.setItems = (list, keepScroll = false) => { items = list; if (!keepScroll) box.scrollTop = 0; paint(); };
  box.repaint = paint;
  requestAnimationFrame(paint);
  paint();
  return box;
}
