// Host entries as people paste them (IPs, "cloud:ip", host ids; separated by spaces, commas,
// semicolons or lines) → the business's hosts they name, and the entries that named none.
export function matchHosts(hosts, text) {
  const byId = new Map(hosts.map((x) => [String(x.bk_host_id), x]));
  const byIp = new Map();
  for (const x of hosts) { byIp.set(x.ip, x); byIp.set(`${x.bk_cloud_id}:${x.ip}`, x); }
  const entries = text.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
  const found = new Map(); const missing = [];
  for (const e of entries) {
    const x = byIp.get(e) || byId.get(e);
    if (x) found.set(x.bk_host_id, x); else missing.push(e);
  }
  return { entries, found, missing };
}
