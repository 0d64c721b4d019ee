/* Cells MDM web console: a page per hash route, built with DOM calls only (never HTML from
 * data). Everything goes through the admin API (docs/openapi.yaml); the client
 * certificate authenticates, changing calls carry the session's X-Cells-CSRF token.
 * What the role may not do (session.may) is not offered; the API refuses it anyway. */
'use strict';

let session = null;
let timer = null;

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function may(action) { return session && session.may.includes(action); }
function reads(role) { return session && session.role === role; }

async function api(method, path, body, retried) {
  const opt = { method, headers: {}, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET') {
    opt.headers['Content-Type'] = 'application/json';
    opt.headers['X-Cells-CSRF'] = session.csrf;
    opt.body = JSON.stringify(body || {});
  }
  const r = await fetch(path, opt);
  const type = r.headers.get('content-type') || '';
  const data = type.startsWith('application/json') ? await r.json() : await r.text();
  if (r.status === 403 && method !== 'GET' && !retried && data && /X-Cells-CSRF/.test(data.error)) {
    /* the server restarted (a new CSRF key) or another front end answers: a new session */
    session = await api('GET', '/api/v1/session');
    return api(method, path, body, true);
  }
  if (!r.ok) {
    const err = new Error((data && data.error) || ('HTTP ' + r.status));
    err.status = r.status;
    throw err;
  }
  return data;
}

function toast(text) {
  const t = document.getElementById('toast');
  t.textContent = text;
  t.hidden = false;
  setTimeout(() => { t.hidden = true; }, 4000);
}

function when(sec) {
  if (!sec) return '—';
  return new Date(sec * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function pill(text, cls) { return h('span', { class: 'pill ' + (cls || '') }, text); }

function compliancePill(c) {
  return pill(c, c === 'compliant' ? 'ok' : c === 'unknown' ? 'warn' : 'bad');
}

function setMain(...kids) {
  const m = document.getElementById('main');
  m.replaceChildren(...kids);
}

function table(cols, rows, id) {
  return h('table', { id },
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows.length ? rows : [h('tr', {}, h('td', { colspan: cols.length, class: 'muted' }, 'none'))]));
}

/* ---- devices ---- */

async function pageDevices() {
  const list = await api('GET', '/api/v1/devices');
  const rows = list.map((d) => h('tr', { 'data-device': d.device_id },
    h('td', { class: 'mono' }, h('a', { href: '#/device/' + d.device_id }, d.device_id)),
    h('td', {}, d.online ? pill('online', 'ok') : pill('offline', 'warn')),
    h('td', { class: 'policy-version' }, String(d.policy_version)),
    h('td', {}, compliancePill(d.compliance),
      (d.compliance_reasons || []).length ? h('div', { class: 'muted' }, d.compliance_reasons.join('; ')) : null),
    h('td', {}, String(d.pending)),
    h('td', {}, when(d.last_seen)),
    h('td', {}, d.audit_flag ? pill(d.audit_flag, 'bad') : '')));
  setMain(h('h2', {}, 'Devices'),
    table(['device', 'state', 'policy', 'compliance', 'pending', 'last seen', 'audit'], rows, 'devices'));
}

/* ---- one device ---- */

function confirmBox(text, what, onyes) {
  /* an explicit second step: the VP name typed again for a wipe */
  const input = what ? h('input', { id: 'confirm-input', placeholder: what, autocomplete: 'off' }) : null;
  const box = h('div', { class: 'confirm', id: 'confirm' },
    h('p', {}, text),
    input ? h('p', {}, 'Type ', h('b', {}, what), ' to confirm: ', input) : null,
    h('div', { class: 'row' },
      h('button', {
        class: 'danger', id: 'confirm-yes',
        onclick: () => {
          if (input && input.value !== what) { toast('type ' + what + ' to confirm'); return; }
          box.remove();
          onyes();
        },
      }, 'Confirm'),
      h('button', { class: 'secondary', id: 'confirm-no', onclick: () => box.remove() }, 'Cancel')));
  return box;
}

function actionsCard(id, vps, msg) {
  const card = h('section', { class: 'card', id: 'actions' }, h('h3', {}, 'Actions'));
  const vpSel = h('select', { id: 'vp-select' }, (vps.length ? vps : ['work', 'personal']).map((v) => h('option', { value: v }, v)));
  const run = async (label, path, body) => {
    try {
      const r = await api('POST', path, body);
      msg.className = 'msg success';
      msg.textContent = label + ': queued ' + r.what + (r.duplicate ? ' (already queued)' : '') + ' — ' + r.id;
      refreshDevice(id);
    } catch (e) {
      msg.className = 'msg error';
      msg.textContent = label + ' refused: ' + e.message;
    }
  };
  const row = h('div', { class: 'row' }, 'VP ', vpSel);
  if (may('device.lock')) {
    row.append(h('button', {
      id: 'btn-lock', class: 'secondary',
      onclick: () => card.append(confirmBox('Lock VP ' + vpSel.value + ' on this device? It is frozen until unlocked.', null,
        () => run('lock', '/api/v1/devices/' + id + '/lock', { vp: vpSel.value }))),
    }, 'Lock…'));
  }
  if (may('device.unlock')) {
    row.append(h('button', {
      id: 'btn-unlock', class: 'secondary',
      onclick: () => card.append(confirmBox('Unlock VP ' + vpSel.value + '?', null,
        () => run('unlock', '/api/v1/devices/' + id + '/unlock', { vp: vpSel.value }))),
    }, 'Unlock…'));
  }
  if (may('device.wipe')) {
    row.append(h('button', {
      id: 'btn-wipe', class: 'danger',
      onclick: () => {
        const vp = vpSel.value;
        card.append(confirmBox('Wipe VP ' + vp + '? Its data is destroyed (crypto-erase) and cannot be recovered.', vp,
          () => run('wipe', '/api/v1/devices/' + id + '/wipe', { vp })));
      },
    }, 'Wipe…'));
  }
  card.append(row, msg);
  return card;
}

function policyCard(id, msg) {
  const ta = h('textarea', { id: 'policy-json', spellcheck: 'false', placeholder: '{"version": 2, "vps": [...]}  (the JSON of cells-mdm policy example)' });
  const card = h('section', { class: 'card', id: 'policy' }, h('h3', {}, 'Push a policy'), ta,
    h('div', { class: 'row' }, h('button', {
      id: 'btn-policy',
      onclick: async () => {
        let p;
        try { p = JSON.parse(ta.value); } catch (e) {
          msg.className = 'msg error'; msg.textContent = 'not JSON: ' + e.message; return;
        }
        try {
          const r = await api('POST', '/api/v1/devices/' + id + '/policy', { policy: p });
          msg.className = 'msg success';
          msg.textContent = 'queued ' + r.what + (r.duplicate ? ' (already queued)' : '') + ' — ' + r.id;
          refreshDevice(id);
        } catch (e) {
          msg.className = 'msg error';
          msg.textContent = 'refused: ' + e.message;
        }
      },
    }, 'Validate and push')), msg);
  return card;
}

async function refreshDevice(id) {
  const d = await api('GET', '/api/v1/devices/' + id);
  const dev = d.device;
  document.getElementById('summary').replaceChildren(
    h('div', { class: 'row' },
      dev.online ? pill('online', 'ok') : pill('offline', 'warn'),
      h('span', {}, 'policy version ', h('b', { id: 'policy-version' }, String(dev.policy_version))),
      h('span', { id: 'compliance' }, 'compliance ', compliancePill(dev.compliance)),
      h('span', { class: 'muted' }, 'last seen ' + when(dev.last_seen))),
    (dev.compliance_reasons || []).length
      ? h('ul', { id: 'compliance-reasons' }, dev.compliance_reasons.map((r) => h('li', {}, r))) : null,
    h('p', {}, 'VPs: ', d.vps.length ? d.vps.join(', ') : h('span', { class: 'muted' }, 'none known yet'),
      ' · VoIP: ', Object.keys(d.voip).length
        ? Object.entries(d.voip).map(([vp, n]) => vp + ' ' + n).join(', ') : h('span', { class: 'muted' }, 'none')));
  document.getElementById('vps-reported').replaceChildren((dev.vps || []).length
    ? table(['VP', 'state', 'screen', 'lock', 'image', 'number'], dev.vps.map((v) => h('tr', { 'data-vp': v.name },
      h('td', {}, v.name),
      h('td', { class: 'vp-state' }, v.running ? pill('running', 'ok') : pill('stopped', '')),
      h('td', {}, v.foreground ? 'foreground' : 'background'),
      h('td', {}, v.locked ? pill('locked', 'warn') : 'unlocked'),
      h('td', { class: 'vp-image mono' }, v.running ? (v.image || 'local image') : ''),
      h('td', {}, v.number || ''))), 'vps-table')
    : h('span', { class: 'muted' }, 'the device has reported no VP'));
  document.getElementById('queue').replaceChildren(table(['id', 'what', 'state', 'created', 'done', 'reason'],
    d.queue.slice().reverse().map((e) => h('tr', { 'data-id': e.id },
      h('td', { class: 'mono' }, e.id), h('td', {}, e.what),
      h('td', { class: 'state' }, pill(e.state, e.state === 'acknowledged' ? 'ok' : e.state === 'failed' ? 'bad' : '')),
      h('td', {}, when(e.created)), h('td', {}, when(e.done_at)), h('td', {}, e.reason || ''))), 'queue-table'));
  document.getElementById('receipts').replaceChildren(table(['VP', 'command', 'wiped at', 'key', 'verified', 'reason'],
    d.receipts.map((r) => h('tr', { 'data-vp': r.vp },
      h('td', {}, r.vp), h('td', { class: 'mono' }, r.command_id), h('td', {}, when(r.wiped_at)),
      h('td', {}, String(r.key_status)),
      h('td', { class: 'verified' }, r.verified ? pill('verified', 'ok') : pill('NOT verified', 'bad')),
      h('td', {}, r.reason || ''))), 'receipts-table'));
  const a = d.audit;
  const rep = a.report || {};
  document.getElementById('audit-verify').replaceChildren(
    a.verified ? pill('uploaded log verifies', 'ok') : pill('uploaded log does NOT verify', 'bad'), ' ',
    h('span', { class: 'muted' }, (rep.records !== undefined ? rep.records + ' records' : '') +
      (rep.reason ? ' — ' + rep.reason : '')), ' ',
    h('a', { href: '#/audit/' + id }, 'search the audit log'));
}

async function pageDevice(id) {
  const msgA = h('p', { class: 'msg', id: 'action-msg' });
  const msgP = h('p', { class: 'msg', id: 'policy-msg' });
  setMain(h('h2', {}, 'Device ', h('span', { class: 'mono' }, id)),
    h('section', { class: 'card', id: 'summary' }, 'Loading…'));
  const d = await api('GET', '/api/v1/devices/' + id);
  const main = document.getElementById('main');
  if (may('device.lock') || may('device.wipe')) main.append(actionsCard(id, d.vps, msgA));
  if (may('device.policy')) main.append(policyCard(id, msgP));
  main.append(h('section', { class: 'card' }, h('h3', {}, 'VPs (as the device reports them)'), h('div', { id: 'vps-reported' })),
    h('section', { class: 'card' }, h('h3', {}, 'Wipe receipts'), h('div', { id: 'receipts' })),
    h('section', { class: 'card' }, h('h3', {}, 'Command queue'), h('div', { id: 'queue' })),
    h('section', { class: 'card' }, h('h3', {}, 'Audit log'), h('div', { id: 'audit-verify' })));
  await refreshDevice(id);
  timer = setInterval(() => refreshDevice(id).catch(() => {}), 2000);
}

/* ---- a device's uploaded audit log ---- */

function auditQuery(form) {
  const q = new URLSearchParams();
  for (const k of ['vp', 'type', 'outcome', 'grep', 'limit']) {
    const v = form.elements[k].value.trim();
    if (v) q.set(k, v);
  }
  return q;
}

async function pageAudit(id) {
  const field = (name, label, ph) => h('label', {}, label, h('input', { name, placeholder: ph || '' }));
  const results = h('div', { id: 'audit-results' });
  const csv = h('a', { id: 'export-csv', download: 'audit-' + id + '.csv' }, 'Export CSV');
  const json = h('a', { id: 'export-json', download: 'audit-' + id + '.json' }, 'Export JSON');
  const form = h('form', { class: 'filters', id: 'audit-filters' },
    field('vp', 'VP', 'work'), field('type', 'event type', 'wipe'), field('outcome', 'outcome', 'ok'),
    field('grep', 'text'), field('limit', 'newest', '1000'),
    h('button', { type: 'submit', id: 'btn-search' }, 'Search'), csv, json);
  const run = async () => {
    const q = auditQuery(form);
    const base = '/api/v1/devices/' + id + '/audit?';
    const rows = await api('GET', base + q.toString());
    q.set('format', 'csv'); csv.href = base + q.toString();
    q.set('format', 'json'); json.href = base + q.toString();
    results.replaceChildren(h('p', { class: 'muted', id: 'audit-count' }, rows.length + ' records'),
      table(['seq', 'time', 'VP', 'actor', 'event', 'outcome', 'details'], rows.map((r) => h('tr', {},
        h('td', {}, String(r.seq)), h('td', { class: 'nowrap' }, new Date(r.time_us / 1000).toISOString().replace('T', ' ')), h('td', {}, r.vp),
        h('td', {}, r.actor), h('td', {}, r.event), h('td', {}, r.outcome), h('td', { class: 'mono' }, r.details))), 'audit-table'));
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); run().catch((err) => toast(err.message)); });
  setMain(h('h2', {}, 'Audit log of ', h('a', { href: '#/device/' + id, class: 'mono' }, id)),
    h('section', { class: 'card' }, form, results));
  await run();
}

/* ---- enrollment tokens ---- */

function pageToken() {
  const out = h('p', { class: 'mono', id: 'token-out' });
  const ttl = h('input', { id: 'token-ttl', value: '3600', size: 8 });
  setMain(h('h2', {}, 'Enrollment token'), h('section', { class: 'card' },
    h('p', {}, 'A one-time token to enroll or re-enroll a device (`cellctl enroll URL TOKEN --ca ca.pem`).'),
    h('div', { class: 'row' }, 'valid for ', ttl, ' s', h('button', {
      id: 'btn-token',
      onclick: async () => {
        try {
          const r = await api('POST', '/api/v1/enroll-tokens', { ttl: parseInt(ttl.value, 10) });
          out.textContent = r.token + '  (expires ' + when(r.expires_at) + ')';
        } catch (e) { out.textContent = 'refused: ' + e.message; }
      },
    }, 'Make a token')), out));
}

/* ---- signed VP images ---- */

async function pageImages() {
  const [list, devices] = await Promise.all([api('GET', '/api/v1/images'), api('GET', '/api/v1/devices')]);
  /* which VPs run each image, as the devices report them */
  const runs = {};
  for (const d of devices) {
    for (const v of d.vps || []) {
      if (v.running && v.image) (runs[v.image] = runs[v.image] || []).push(d.device_id.slice(0, 8) + '/' + v.name);
    }
  }
  const cards = list.map((im) => {
    const ref = im.name + '@' + im.version;
    return h('section', { class: 'card', 'data-image': ref },
      h('h3', {}, ref, ' ', h('span', { class: 'muted' }, im.fs_type + ', ' + (im.size / 1048576).toFixed(1) + ' MB')),
      h('p', { class: 'muted' }, h('span', { class: 'mono' }, 'sha256 ' + im.sha256), h('br'),
        'built ' + when(im.created) + ' · pushed ' + when(im.pushed_at) + ' · signature expires ' + when(im.expires_at)),
      h('p', {}, 'running in: ', h('span', { class: 'runs' }, (runs[ref] || []).join(', ') || 'no VP')),
      im.devices.length
        ? table(['device', 'delivery', 'done', 'reason'], im.devices.map((d) => h('tr', { 'data-device': d.device_id },
          h('td', { class: 'mono' }, h('a', { href: '#/device/' + d.device_id }, d.device_id)),
          h('td', { class: 'state' }, pill(d.state, d.state === 'done' ? 'ok' : d.state === 'failed' ? 'bad' : '')),
          h('td', {}, when(d.done_at)), h('td', {}, d.reason || ''))))
        : h('p', { class: 'muted' }, 'not pushed to any device'));
  });
  setMain(h('h2', {}, 'VP images'),
    h('p', { class: 'muted' }, 'Signed images (cells-mdm image build / sign / push); a policy names the image each VP runs.'),
    ...(cards.length ? cards : [h('p', { class: 'muted', id: 'no-images' }, 'no image pushed yet')]));
}

/* ---- the admin audit log ---- */

async function pageAdminAudit() {
  const v = h('div', { id: 'chain' });
  const check = async () => {
    const r = await api('GET', '/api/v1/admin-audit/verify');
    v.replaceChildren(r.ok ? pill('chain verifies: ' + r.entries + ' entries', 'ok')
      : pill('chain BROKEN: ' + r.problem, 'bad'), ' ', h('span', { class: 'mono muted' }, r.head));
  };
  const list = await api('GET', '/api/v1/admin-audit');
  setMain(h('h2', {}, 'Admin audit log'),
    h('section', { class: 'card' }, h('div', { class: 'row' }, h('button', { id: 'btn-verify', onclick: () => check().catch((e) => toast(e.message)) }, 'Verify chain'), v)),
    table(['seq', 'at', 'admin', 'role', 'action', 'target', 'detail', 'outcome'], list.slice().reverse().map((e) => h('tr', {},
      h('td', {}, String(e.seq)), h('td', {}, when(e.at)), h('td', {}, e.admin), h('td', {}, e.role), h('td', {}, e.action),
      h('td', { class: 'mono' }, e.target), h('td', { class: 'mono' }, e.detail),
      h('td', {}, pill(e.outcome, e.outcome === 'ok' ? 'ok' : 'bad')))), 'admin-audit-table'));
  await check();
}

/* ---- routing ---- */

async function route() {
  if (timer) { clearInterval(timer); timer = null; }
  const parts = (location.hash || '#/devices').slice(2).split('/');
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.getAttribute('href') === '#/' + parts[0]);
  try {
    if (parts[0] === 'device' && /^[0-9a-f]{32}$/.test(parts[1])) await pageDevice(parts[1]);
    else if (parts[0] === 'audit' && /^[0-9a-f]{32}$/.test(parts[1])) await pageAudit(parts[1]);
    else if (parts[0] === 'images') await pageImages();
    else if (parts[0] === 'token' && may('enroll-token.create')) pageToken();
    else if (parts[0] === 'admin-audit' && (reads('admin') || reads('auditor'))) await pageAdminAudit();
    else await pageDevices();
  } catch (e) {
    setMain(h('p', { class: 'msg error' }, 'Error: ' + e.message));
  }
}

async function start() {
  try {
    session = await api('GET', '/api/v1/session');
  } catch (e) {
    setMain(h('p', { class: 'msg error' }, 'Not signed in: ' + e.message + ' (an admin client certificate is required)'));
    return;
  }
  document.getElementById('who').textContent = session.name + ' (' + session.role + ')';
  document.body.dataset.role = session.role;
  document.getElementById('nav-token').hidden = !may('enroll-token.create');
  document.getElementById('nav-admin-audit').hidden = !(reads('admin') || reads('auditor'));
  window.addEventListener('hashchange', route);
  route();
}

start();
