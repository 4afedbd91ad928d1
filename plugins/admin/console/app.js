// The SecKill operators' console: one page over the admin API (SPEC §5). Plain JavaScript, no build step.
// Every call goes to the same origin, so the admin's Origin rule lets it through; with admin.token set the page asks
// for the token once, keeps it for the tab (sessionStorage) and sends it as "Authorization: Bearer".
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const TOKEN_KEY = "seckill.admin_token";
const HISTORY = 120; // chart points kept: two minutes at one sample a second
const POLL_MS = 1000;

// ---- API -------------------------------------------------------------------------------------------------------

let tokenWaiters = null;

function askToken(message) {
  if (tokenWaiters) return new Promise((res) => tokenWaiters.push(res));
  tokenWaiters = [];
  const dlg = $("#token-dialog");
  $("#token-err").textContent = message || "";
  $("#token-input").value = "";
  dlg.showModal();
  return new Promise((res) => {
    tokenWaiters.push(res);
    $("#token-form").onsubmit = () => {
      sessionStorage.setItem(TOKEN_KEY, $("#token-input").value);
      const w = tokenWaiters;
      tokenWaiters = null;
      w.forEach((f) => f());
    };
  });
}

// Returns the envelope {code, message, data}. A 1015 about the token asks for it and tries again.
async function api(method, path, body, contentType) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const headers = {};
    const tok = sessionStorage.getItem(TOKEN_KEY);
    if (tok) headers["Authorization"] = "Bearer " + tok;
    let payload;
    if (body instanceof URLSearchParams) {
      headers["Content-Type"] = "application/x-www-form-urlencoded";
      payload = body.toString();
    } else if (typeof body === "string") {
      headers["Content-Type"] = contentType || "text/plain";
      payload = body;
    }
    let res;
    try {
      res = await fetch(path, { method, headers, body: payload, cache: "no-store" });
    } catch (e) {
      setConn("admin unreachable: " + e.message, true);
      return { code: -1, message: "admin unreachable", data: null };
    }
    let env;
    try {
      env = await res.json();
    } catch (e) {
      env = { code: -1, message: "HTTP " + res.status, data: null };
    }
    if (env.code === 1015 && /token/.test(env.message)) {
      await askToken(tok ? "That token was refused: " + env.message : "");
      continue;
    }
    setConn("", false);
    return env;
  }
  return { code: 1015, message: "admin token refused", data: null };
}

function setConn(msg, bad) {
  const el = $("#conn");
  el.textContent = msg;
  el.className = bad ? "err" : "muted";
}

// ---- forms: each 1001 names its parameter first ("total: must be ..."), shown next to that field ---------------

function clearErrors(form) {
  $$(".err", form).forEach((e) => (e.textContent = ""));
  $$(".invalid", form).forEach((e) => e.classList.remove("invalid"));
  const ok = $(".ok", form);
  if (ok) ok.textContent = "";
}

function showResult(form, env, okText) {
  clearErrors(form);
  if (env.code === 0) {
    const ok = $(".ok", form);
    if (ok) ok.textContent = okText;
    return true;
  }
  const m = /^([a-z_]+): (.*)$/.exec(env.message || "");
  let slot = m ? $(`.err[data-for="${m[1]}"]`, form) : null;
  if (slot) {
    slot.textContent = m[2];
    const input = form.elements[m[1]];
    if (input) input.classList.add("invalid");
  } else {
    slot = $('.err[data-for="_form"]', form);
    slot.textContent = `${env.code}: ${env.message}`;
  }
  return false;
}

function formParams(form, skipEmpty) {
  const p = new URLSearchParams();
  for (const el of form.elements) {
    if (!el.name) continue;
    let v = el.value;
    if (el.type === "datetime-local") v = v ? String(Math.floor(new Date(v).getTime() / 1000)) : "";
    if (skipEmpty && v === "") continue;
    p.append(el.name, v);
  }
  return p;
}

const fmtTime = (s) => new Date(s * 1000).toLocaleString();
function toLocalInput(s) {
  const d = new Date(s * 1000), pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function cell(tr, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  tr.appendChild(td);
  return td;
}

function button(td, label, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.onclick = onclick;
  td.appendChild(b);
  return b;
}

// ---- products --------------------------------------------------------------------------------------------------

function resetProductForm() {
  const form = $("#product-form");
  clearErrors(form);
  form.reset();
  form.elements.product_id.value = "";
  $("#product-submit").textContent = "Create product";
}

function editProduct(p) {
  const form = $("#product-form");
  clearErrors(form);
  for (const k of ["product_id", "product_name", "product_total", "status"]) form.elements[k].value = p[k];
  $("#product-submit").textContent = `Save product ${p.product_id}`;
}

async function loadProducts() {
  const env = await api("GET", "/product/list");
  const tbody = $("#products-table tbody");
  tbody.textContent = "";
  for (const p of env.data || []) {
    const tr = document.createElement("tr");
    tr.dataset.id = p.product_id;
    cell(tr, p.product_id);
    cell(tr, p.product_name);
    cell(tr, p.product_total);
    cell(tr, p.status ? "on" : "off");
    const td = cell(tr, "");
    button(td, "Edit", () => editProduct(p));
    button(td, p.status ? "Disable" : "Enable", async () => {
      const r = await api("POST", "/product/update", new URLSearchParams({ product_id: p.product_id, status: p.status ? 0 : 1 }));
      if (r.code !== 0) alert(`${r.code}: ${r.message}`);
      loadProducts();
    });
    button(td, "Delete", async () => {
      const r = await api("POST", "/product/delete", new URLSearchParams({ product_id: p.product_id }));
      if (r.code !== 0) alert(`${r.code}: ${r.message}`);
      loadProducts();
    });
    tbody.appendChild(tr);
  }
}

$("#product-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const id = form.elements.product_id.value;
  const env = await api("POST", id ? "/product/update" : "/product/create", formParams(form, true));
  const ok = id ? `saved product ${id}` : `created product ${env.data && env.data.product_id}`;
  if (showResult(form, env, ok)) loadProducts();
});
$("#product-new").onclick = resetProductForm;

// ---- activities ------------------------------------------------------------------------------------------------

function resetActivityForm() {
  const form = $("#activity-form");
  clearErrors(form);
  form.reset();
  form.elements.activity_id.value = "";
  const now = Math.floor(Date.now() / 1000);
  form.elements.start_time.value = toLocalInput(now);
  form.elements.end_time.value = toLocalInput(now + 3600);
  $("#activity-submit").textContent = "Create activity";
}

function editActivity(a) {
  const form = $("#activity-form");
  clearErrors(form);
  for (const k of ["activity_id", "activity_name", "product_id", "total", "status", "speed", "buy_limit", "buy_rate"])
    form.elements[k].value = a[k];
  form.elements.shards.value = a.shards || 1;
  form.elements.start_time.value = toLocalInput(a.start_time);
  form.elements.end_time.value = toLocalInput(a.end_time);
  $("#activity-submit").textContent = `Save activity ${a.activity_id}`;
}

async function loadActivities() {
  const env = await api("GET", "/activity/list");
  const tbody = $("#activities-table tbody");
  tbody.textContent = "";
  for (const a of env.data || []) {
    const tr = document.createElement("tr");
    tr.dataset.id = a.activity_id;
    // consumed and returned (cancelled + expired tokens, whose units went back on sale)
    for (const v of [a.activity_id, a.activity_name, a.product_id, fmtTime(a.start_time), fmtTime(a.end_time), a.total, a.shards || 1, a.sold, a.left, a.consumed, a.returned])
      cell(tr, v);
    cell(tr, a.status ? "enabled" : "disabled");
    const td = cell(tr, "");
    button(td, "Edit", () => editActivity(a));
    button(td, a.status ? "Disable" : "Enable", async () => {
      const r = await api("POST", "/activity/update", new URLSearchParams({ activity_id: a.activity_id, status: a.status ? 0 : 1 }));
      if (r.code !== 0) alert(`${r.code}: ${r.message}`);
      loadActivities();
    });
    tbody.appendChild(tr);
  }
}

$("#activity-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const id = form.elements.activity_id.value;
  const params = formParams(form, true);
  const env = await api("POST", id ? "/activity/update" : "/activity/create", params);
  const ok = id ? `saved activity ${id}` : `created activity ${env.data && env.data.activity_id}`;
  if (showResult(form, env, ok + (env.data && env.data.synced === false ? " (etcd sync pending)" : ""))) loadActivities();
});
$("#activity-new").onclick = resetActivityForm;

// ---- policies --------------------------------------------------------------------------------------------------

let policyCurrent = null;

async function loadPolicyList() {
  const env = await api("GET", "/policy/list");
  const sel = $("#policy-name");
  const names = (env.data || []).map((p) => (typeof p === "string" ? p : p.name));
  const keep = sel.value;
  sel.textContent = "";
  for (const n of names) {
    const o = document.createElement("option");
    o.value = o.textContent = n;
    sel.appendChild(o);
  }
  if (names.includes(keep)) sel.value = keep;
  if (sel.value && sel.value !== policyCurrent) loadPolicy(sel.value);
}

async function loadPolicy(name, keepMessages) {
  policyCurrent = name;
  if (!keepMessages) $("#policy-err").textContent = $("#policy-ok").textContent = "";
  const env = await api("GET", "/policy/" + encodeURIComponent(name));
  if (env.code !== 0) {
    $("#policy-err").textContent = `${env.code}: ${env.message}`;
    return;
  }
  $("#policy-src").value = env.data.source || "";
  $("#policy-info").textContent = `${env.data.origin}, revision ${env.data.revision}, sha256 ${String(env.data.sha256).slice(0, 12)}…`;
}

$("#policy-name").onchange = (ev) => loadPolicy(ev.target.value);

$("#policy-save").onclick = async () => {
  const name = $("#policy-name").value;
  const err = $("#policy-err"), ok = $("#policy-ok");
  err.textContent = ok.textContent = "";
  const env = await api("PUT", "/policy/" + encodeURIComponent(name), $("#policy-src").value, "text/x-lua");
  if (env.code === 0) {
    ok.textContent = `saved ${name}: etcd revision ${env.data.revision}`;
    loadPolicy(name, true);
    return;
  }
  // Lua's message carries the chunk name and the line, "source: limits.lua:5: unexpected symbol near '='"
  const m = /:(\d+):\s*(.*)$/s.exec(env.message || "");
  if (m) {
    err.textContent = `line ${m[1]}: ${m[2]} (${env.message})`;
    selectLine($("#policy-src"), Number(m[1]));
  } else {
    err.textContent = `${env.code}: ${env.message}`;
  }
};

function selectLine(ta, line) {
  const lines = ta.value.split("\n");
  let start = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
  ta.focus();
  ta.setSelectionRange(start, start + (lines[line - 1] || "").length);
}

function renderPolicyNodes(nodes) {
  const tbody = $("#policy-nodes tbody");
  tbody.textContent = "";
  for (const n of nodes)
    for (const p of n.policies || []) {
      const tr = document.createElement("tr");
      cell(tr, n.node_id);
      cell(tr, p.name);
      cell(tr, p.revision);
      cell(tr, p.source);
      cell(tr, p.sha256 ? p.sha256.slice(0, 12) + "…" : null);
      cell(tr, p.error || "");
      tbody.appendChild(tr);
    }
}

// ---- blacklist -------------------------------------------------------------------------------------------------

const bl = { offsets: ["0"], next: null };

async function loadBlacklist(offset) {
  const type = $("#bl-type").value;
  const env = await api("GET", `/blacklist/list?type=${type}&offset=${encodeURIComponent(offset)}&limit=50`);
  const tbody = $("#bl-table tbody");
  tbody.textContent = "";
  if (env.code !== 0) {
    $("#bl-info").textContent = `${env.code}: ${env.message}`;
    return;
  }
  const q = $("#bl-search").value.trim().toLowerCase();
  for (const e of env.data.entries || []) {
    if (q && !e.value.toLowerCase().includes(q) && !(e.reason || "").toLowerCase().includes(q)) continue;
    const tr = document.createElement("tr");
    cell(tr, e.value);
    cell(tr, e.reason);
    button(cell(tr, ""), "Remove", async () => {
      const r = await api("POST", "/blacklist/remove", new URLSearchParams({ type, value: e.value }));
      if (r.code !== 0) alert(`${r.code}: ${r.message}`);
      loadBlacklist(offset);
    });
    tbody.appendChild(tr);
  }
  bl.next = env.data.next_offset;
  $("#bl-next").disabled = !bl.next;
  $("#bl-info").textContent = `${env.data.count} on this page` + (bl.next ? ", more on the next" : "");
}

$("#bl-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const env = await api("POST", "/blacklist/add", formParams(form, true));
  if (showResult(form, env, "added")) {
    $("#bl-type").value = form.elements.type.value;
    loadBlacklist("0");
  }
});
$("#bl-first").onclick = () => loadBlacklist("0");
$("#bl-next").onclick = () => bl.next && loadBlacklist(bl.next);
$("#bl-type").onchange = () => loadBlacklist("0");
$("#bl-search").oninput = () => loadBlacklist("0");

// ---- tabs ------------------------------------------------------------------------------------------------------

const loaders = {
  products: loadProducts,
  activities: () => { loadActivities(); if (!$("#activity-form").elements.activity_id.value) resetActivityForm(); },
  policies: loadPolicyList,
  blacklist: () => loadBlacklist("0"),
  dashboard: () => {},
};

function showTab() {
  const name = (location.hash || "#dashboard").slice(1);
  const tab = loaders[name] ? name : "dashboard";
  $$(".tab").forEach((s) => (s.hidden = s.id !== "tab-" + tab));
  $$("nav a").forEach((a) => a.classList.toggle("active", a.dataset.tab === tab));
  loaders[tab]();
}
window.addEventListener("hashchange", showTab);

// ---- dashboard -------------------------------------------------------------------------------------------------
// Nodes publish cumulative counters (host/stats_publish.c); rates come from two successive samples of one node.

const dash = { prev: new Map(), samples: 0, last: null, charts: null };
window.seckillDashboard = dash; // for the browser test and for curious operators

const sumValues = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);

function quantile(counts, le, q) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return null;
  const want = q * total;
  let cum = 0;
  for (let i = 0; i < counts.length; i++) {
    if (!counts[i] || cum + counts[i] < want) { cum += counts[i]; continue; }
    const lo = i ? le[i - 1] : 0;
    if (i >= le.length) return lo;
    return lo + ((want - cum) / counts[i]) * (le[i] - lo);
  }
  return le[le.length - 1];
}

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
const CODE_COLORS = { 0: "#16a34a", 1007: "#6b7280", 1008: "#dc2626", 1010: "#d97706", 1011: "#eab308", 1012: "#7c3aed", 1013: "#991b1b", 1002: "#0891b2", 1001: "#db2777", 1004: "#4b5563" };
const codeColor = (c) => CODE_COLORS[c] || "#9ca3af";

function makeChart(id, yTitle) {
  if (typeof Chart === "undefined") return null;
  return new Chart($(id), {
    type: "line",
    data: { labels: [], datasets: [] },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
      elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0 } }, // no smoothing: no made-up overshoot
      scales: { x: { type: "linear", ticks: { stepSize: 1, maxTicksLimit: 13, callback: (v) => `${Math.round(v)}s` } }, y: { beginAtZero: true, title: { display: true, text: yTitle } } },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
    },
  });
}

function series(chart, label, color, dashed) {
  let ds = chart.data.datasets.find((d) => d.label === label);
  if (!ds) {
    ds = { label, data: [], borderColor: color, backgroundColor: color, borderDash: dashed ? [5, 4] : [] };
    chart.data.datasets.push(ds);
  }
  return ds;
}

function push(chart, label, color, x, y, dashed) {
  if (!chart || y === null || y === undefined || Number.isNaN(y)) return;
  const ds = series(chart, label, color, dashed);
  ds.data.push({ x, y });
  if (ds.data.length > HISTORY) ds.data.shift();
}

const t0 = Date.now();

function onSample(data) {
  const x = (Date.now() - t0) / 1000;
  if (!dash.charts && typeof Chart !== "undefined")
    dash.charts = { codes: makeChart("#chart-codes", "req/s"), stock: makeChart("#chart-stock", "units"), lat: makeChart("#chart-lat", "ms"), nodes: makeChart("#chart-nodes", "req/s") };
  const charts = dash.charts || {};
  const rows = [], codeRates = {}, mergedLat = [];
  let le = null, totalRps = 0, totalWins = 0, rated = 0;
  for (const n of data.nodes) {
    const prev = dash.prev.get(n.node_id);
    const row = { node: n, rps: null, winsPerSec: null, codes: {} };
    totalWins += n.wins || 0;
    if (prev && n.ts_ms > prev.ts_ms) {
      const dt = (n.ts_ms - prev.ts_ms) / 1000;
      row.rps = Math.max(0, (sumValues(n.codes) - sumValues(prev.codes)) / dt);
      row.winsPerSec = Math.max(0, ((n.wins || 0) - (prev.wins || 0)) / dt);
      for (const [c, v] of Object.entries(n.codes || {})) {
        const r = Math.max(0, (v - ((prev.codes || {})[c] || 0)) / dt);
        row.codes[c] = r;
        codeRates[c] = (codeRates[c] || 0) + r;
      }
      if (n.lat && prev.lat && n.lat.counts) {
        le = n.lat.le_us;
        n.lat.counts.forEach((v, i) => (mergedLat[i] = (mergedLat[i] || 0) + Math.max(0, v - (prev.lat.counts[i] || 0))));
      }
      totalRps += row.rps;
      rated++;
    }
    if (!prev || n.ts_ms !== prev.ts_ms) dash.prev.set(n.node_id, n);
    rows.push(row);
  }
  const p50 = le ? quantile(mergedLat, le, 0.5) : null, p99 = le ? quantile(mergedLat, le, 0.99) : null;
  let sold = 0, left = 0;
  for (const a of data.activities) { sold += a.sold || 0; left += a.left || 0; }

  if (rated) {
    push(charts.codes, "total", "#111827", x, totalRps);
    for (const [c, r] of Object.entries(codeRates)) push(charts.codes, "code " + c, codeColor(c), x, r);
    for (const [i, row] of rows.entries()) if (row.rps !== null) push(charts.nodes, row.node.node_id, COLORS[i % COLORS.length], x, row.rps);
    push(charts.lat, "p50 (all nodes)", "#2563eb", x, p50 === null ? null : p50 / 1000, true);
    push(charts.lat, "p99 (all nodes)", "#dc2626", x, p99 === null ? null : p99 / 1000);
    for (const [i, row] of rows.entries()) {
      const n = row.node, c = COLORS[(i + 2) % COLORS.length];
      if (n.p50_us !== null) push(charts.lat, `p50 ${n.node_id}`, c, x, n.p50_us / 1000, true);
      if (n.p99_us !== null) push(charts.lat, `p99 ${n.node_id}`, c, x, n.p99_us / 1000);
    }
  }
  push(charts.stock, "wins (all nodes)", "#16a34a", x, totalWins);
  push(charts.stock, "sold", "#2563eb", x, sold);
  push(charts.stock, "stock left", "#d97706", x, left);
  for (const c of Object.values(charts)) c && c.update("none");

  $("#total-rps").textContent = rated ? totalRps.toFixed(0) : "–";
  $("#total-wins").textContent = totalWins;
  $("#total-left").textContent = data.activities.length ? left : "–";
  $("#total-lat").textContent = p50 === null ? "–" : `${(p50 / 1000).toFixed(2)} / ${(p99 / 1000).toFixed(2)} ms`;
  $("#total-nodes").textContent = data.nodes.length;

  const tbody = $("#nodes-table tbody");
  tbody.textContent = "";
  for (const row of rows) {
    const n = row.node, tr = document.createElement("tr");
    tr.dataset.node = n.node_id;
    cell(tr, n.node_id);
    cell(tr, (n.roles || []).join(","));
    cell(tr, row.rps === null ? null : row.rps.toFixed(1)).className = "rps";
    cell(tr, n.wins).className = "wins";
    cell(tr, row.winsPerSec === null ? null : row.winsPerSec.toFixed(1));
    cell(tr, n.p50_us === null ? null : (n.p50_us / 1000).toFixed(2));
    cell(tr, n.p99_us === null ? null : (n.p99_us / 1000).toFixed(2));
    cell(tr, Object.entries(row.codes).filter(([, r]) => r > 0).map(([c, r]) => `${c}:${r.toFixed(0)}`).join(" "));
    cell(tr, n.redis);
    cell(tr, n.etcd);
    cell(tr, `${Math.max(0, (data.now_ms - n.ts_ms) / 1000).toFixed(1)}s`);
    tbody.appendChild(tr);
  }
  const at = $("#dash-acts tbody");
  at.textContent = "";
  for (const a of data.activities) {
    const tr = document.createElement("tr");
    tr.dataset.id = a.activity_id;
    for (const v of [a.activity_id, a.activity_name, a.product_id, a.status ? "enabled" : "disabled", a.total, a.sold, a.left]) cell(tr, v);
    at.appendChild(tr);
  }
  renderPolicyNodes(data.nodes);
  dash.samples++;
  dash.last = { at: Date.now(), totalRps, totalWins, sold, left, p50, p99, rows: rows.map((r) => ({ node_id: r.node.node_id, rps: r.rps, wins: r.node.wins })) };
  $("#dash-status").textContent = `updated ${new Date().toLocaleTimeString()}` + (typeof Chart === "undefined" ? " (chart.js missing: see admin.chart_js)" : "");
}

async function poll() {
  const started = Date.now();
  const env = await api("GET", "/dashboard/data");
  if (env.code === 0) onSample(env.data);
  else $("#dash-status").textContent = `${env.code}: ${env.message}`;
  setTimeout(poll, Math.max(100, POLL_MS - (Date.now() - started)));
}

showTab();
poll();
