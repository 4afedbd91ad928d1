// Drives the admin console in Debian's headless Chromium (playwright-core, no downloaded browser) for
// tests/integration/test_console_browser.py, which starts the servers and passes them in SK_CONSOLE_TEST (JSON):
//   {admin, token, chromium, shot, bench, benches: [{access, node_id}], redis, secret}
// Prints one line per step and exits 0 only when every check held.
import { spawn } from "node:child_process";
import { chromium } from "playwright-core";

const cfg = JSON.parse(process.env.SK_CONSOLE_TEST);
const t0 = Date.now();
const log = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
function check(cond, msg) {
  if (!cond) throw new Error("check failed: " + msg);
  log("ok: " + msg);
}

function runBench(access, seq) {
  const argv = ["--access", access, "--admin", cfg.admin.replace(/^http:\/\//, ""), "--admin-token", cfg.token, "--redis", cfg.redis,
    "--secret", cfg.secret, "-R", "150", "-d", "4", "-c", "16", "--total", "40", "--users", "3000", "--user-base", String(5000000 + seq * 100000)];
  return new Promise((resolve) => {
    const p = spawn(cfg.bench, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("close", (code) => {
      let summary = null;
      try { summary = JSON.parse(out.trim().split("\n").pop()); } catch (e) { /* reported below */ }
      resolve({ code, out, summary });
    });
  });
}

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  // the flags that work on this machine's closed network (see README "Console"): no background connections
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));

  await page.goto(cfg.admin + "/");
  // admin.token is set: the first API call is refused with 1015 and the page asks for the token
  await page.waitForSelector("#token-dialog[open]", { timeout: 10000 });
  await page.fill("#token-input", cfg.token);
  await page.click("#token-save");
  await page.waitForFunction(() => window.seckillDashboard && window.seckillDashboard.samples > 0, null, { timeout: 10000 });
  check(await page.evaluate(() => typeof Chart === "function"), "Chart.js from libjs-chart.js loaded");

  // products: a validation error next to its field, then a real create
  await page.click('nav a[data-tab="products"]');
  await page.fill('#product-form [name="product_name"]', "console product");
  await page.fill('#product-form [name="product_total"]', "0");
  await page.click("#product-submit");
  const totalErr = page.locator('#product-form .err[data-for="product_total"]');
  await totalErr.filter({ hasText: "must be" }).waitFor({ timeout: 5000 });
  check(true, `product_total error shown next to its field: "${await totalErr.textContent()}"`);
  await page.fill('#product-form [name="product_total"]', "100");
  await page.click("#product-submit");
  await page.locator("#product-form .ok", { hasText: "created product" }).waitFor({ timeout: 5000 });
  const productText = await page.locator("#product-form .ok").textContent();
  const productId = /created product (\d+)/.exec(productText)[1];
  await page.locator(`#products-table tr[data-id="${productId}"]`).waitFor({ timeout: 5000 });
  check(true, `product ${productId} created through the UI and listed`);
  const prow = () => page.locator(`#products-table tr[data-id="${productId}"]`);
  await prow().getByRole("button", { name: "Edit" }).click();
  await page.fill('#product-form [name="product_name"]', "console product, renamed");
  await page.click("#product-submit");
  await page.locator(`#products-table tr[data-id="${productId}"]`, { hasText: "console product, renamed" }).waitFor({ timeout: 5000 });
  await prow().getByRole("button", { name: "Disable" }).click();
  await page.locator(`#products-table tr[data-id="${productId}"]`, { hasText: "off" }).waitFor({ timeout: 5000 });
  await prow().getByRole("button", { name: "Enable" }).click();
  await page.locator(`#products-table tr[data-id="${productId}"]`, { hasText: "on" }).getByRole("button", { name: "Disable" }).waitFor({ timeout: 5000 });
  check(true, `product ${productId} edited, disabled and enabled through the UI`);

  // activities: a bad buy_rate, then a create, then disable and enable again from the list
  await page.click('nav a[data-tab="activities"]');
  await page.fill('#activity-form [name="activity_name"]', "console sale");
  await page.fill('#activity-form [name="product_id"]', productId);
  await page.fill('#activity-form [name="total"]', "50");
  await page.fill('#activity-form [name="buy_rate"]', "2");
  await page.click("#activity-submit");
  await page.locator('#activity-form .err[data-for="buy_rate"]', { hasText: "0 < r <= 1" }).waitFor({ timeout: 5000 });
  check(await page.locator('#activity-form [name="buy_rate"].invalid').count() === 1, "buy_rate error shown next to its field");
  await page.screenshot({ path: cfg.shot.replace(/dashboard\.png$/, "activity-error.png") });
  await page.fill('#activity-form [name="buy_rate"]', "1");
  await page.fill('#activity-form [name="shards"]', "2");
  await page.click("#activity-submit");
  await page.locator("#activity-form .ok", { hasText: "created activity" }).waitFor({ timeout: 5000 });
  const activityId = /created activity (\d+)/.exec(await page.locator("#activity-form .ok").textContent())[1];
  const row = page.locator(`#activities-table tr[data-id="${activityId}"]`);
  await row.waitFor({ timeout: 5000 });
  check((await row.locator("td").nth(6).textContent()) === "2", "the activity's shards (2) set in the form and shown in the list");
  await row.waitFor({ timeout: 5000 });
  await row.getByRole("button", { name: "Disable" }).click();
  await page.locator(`#activities-table tr[data-id="${activityId}"]`, { hasText: "disabled" }).waitFor({ timeout: 5000 });
  await page.locator(`#activities-table tr[data-id="${activityId}"]`).getByRole("button", { name: "Enable" }).click();
  await page.locator(`#activities-table tr[data-id="${activityId}"]`, { hasText: "enabled" }).waitFor({ timeout: 5000 });
  check(true, `activity ${activityId} created, disabled and enabled through the UI`);

  // policies: a syntax error is shown with its line; then a limits.lua that admits the load (one client IP)
  await page.click('nav a[data-tab="policies"]');
  await page.locator('#policy-name option[value="limits.lua"]').waitFor({ state: "attached", timeout: 5000 });
  await page.selectOption("#policy-name", "limits.lua");
  await page.waitForFunction(() => document.querySelector("#policy-src").value.includes("admit"), null, { timeout: 5000 });
  await page.fill("#policy-src", "-- console test\nfunction admit(r)\n  return true\nend\nlocal x = = 1\n");
  await page.click("#policy-save");
  await page.locator("#policy-err", { hasText: "line 5" }).waitFor({ timeout: 5000 });
  check(true, `policy compile error shown with its line: "${await page.locator("#policy-err").textContent()}"`);
  await page.screenshot({ path: cfg.shot.replace(/dashboard\.png$/, "policy-error.png") });
  await page.fill("#policy-src", "-- console test: admit everything\nfunction admit(r)\n  return true\nend\n");
  await page.click("#policy-save");
  await page.locator("#policy-ok", { hasText: "saved limits.lua" }).waitFor({ timeout: 5000 });
  const rev = /revision (\d+)/.exec(await page.locator("#policy-ok").textContent())[1];
  // every node publishes the revision it runs; the table shows it for each node
  for (const b of cfg.benches) {
    await page.locator("#policy-nodes tr", { hasText: b.node_id }).filter({ hasText: "limits.lua" }).filter({ hasText: `etcd` })
      .filter({ has: page.locator("td", { hasText: new RegExp(`^${rev}$`) }) }).waitFor({ timeout: 8000 });
  }
  check(true, `limits.lua revision ${rev} shown as running on ${cfg.benches.map((b) => b.node_id).join(", ")}`);

  // blacklist: add, find, page, remove
  await page.click('nav a[data-tab="blacklist"]');
  await page.fill('#bl-form [name="value"]', "424242");
  await page.fill('#bl-form [name="reason"]', "console test");
  await page.click("#bl-add");
  await page.locator("#bl-table tr", { hasText: "424242" }).waitFor({ timeout: 5000 });
  await page.fill("#bl-search", "4242");
  await page.locator("#bl-table tr", { hasText: "console test" }).waitFor({ timeout: 5000 });
  await page.locator("#bl-table tr", { hasText: "424242" }).getByRole("button", { name: "Remove" }).click();
  await page.locator("#bl-table tr", { hasText: "424242" }).waitFor({ state: "detached", timeout: 5000 });
  check(true, "blacklist entry added, searched and removed");

  // the sale: one bench per access node, at once, while the dashboard watches
  await page.click('nav a[data-tab="dashboard"]');
  const peak = {};
  const sampler = setInterval(async () => {
    try {
      const last = await page.evaluate(() => window.seckillDashboard.last);
      for (const r of last.rows) if (r.rps !== null) peak[r.node_id] = Math.max(peak[r.node_id] || 0, r.rps);
    } catch (e) { /* page busy */ }
  }, 500);
  const results = await Promise.all(cfg.benches.map((b, i) => runBench(b.access, i)));
  clearInterval(sampler);
  let wins = 0;
  for (const [i, r] of results.entries()) {
    check(r.code === 0 && r.summary && r.summary.pass, `bench ${i} against ${cfg.benches[i].access} passed (wins ${r.summary && r.summary.wins})` + (r.code === 0 ? "" : "\n" + r.out));
    wins += r.summary.wins;
  }
  // the published counters lag by up to one publication (500 ms) and one poll (1 s)
  await page.waitForFunction((w) => window.seckillDashboard.last.totalWins >= w, wins, { timeout: 8000 });
  const last = await page.evaluate(() => window.seckillDashboard.last);
  check(last.totalWins === wins, `dashboard shows ${last.totalWins} wins, the benches made ${wins}`);
  for (const [i, b] of cfg.benches.entries()) {
    const nodeRow = last.rows.find((r) => r.node_id === b.node_id);
    check(nodeRow && nodeRow.wins === results[i].summary.wins, `node ${b.node_id}: ${nodeRow && nodeRow.wins} wins on the dashboard`);
    check((peak[b.node_id] || 0) > 20, `node ${b.node_id}: a per-node rate was shown (peak ${(peak[b.node_id] || 0).toFixed(0)} req/s)`);
  }
  const rowsShown = await page.locator("#nodes-table tbody tr").count();
  check(rowsShown >= cfg.benches.length, `${rowsShown} node rows in the table`);
  check(await page.locator("#total-wins").textContent() === String(wins), "the wins card shows the total");
  await page.screenshot({ path: cfg.shot, fullPage: true });
  log("screenshot " + cfg.shot);
  check(pageErrors.length === 0, "no script errors on the page" + (pageErrors.length ? ": " + pageErrors.join("; ") : ""));
} catch (e) {
  failed = true;
  console.log(String(e && e.stack || e));
} finally {
  await browser.close();
}
log(failed ? "FAILED" : "all checks passed");
process.exit(failed ? 1 : 0);
