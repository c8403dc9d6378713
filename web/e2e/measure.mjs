// Measures the web client in headless Chromium against one running node:
//   - the bundle's size, raw and gzipped (dist/);
//   - time from page load to the first message shown, on a guild whose channel holds 10,000
//     messages (the newest page is drawn first; older pages load on scroll);
//   - the tab's JS heap and DOM size after 1,000 messages arrived live.
//
//   GUILDHALL_NODE=http://127.0.0.1:PORT CHROMIUM=/usr/bin/chromium node e2e/measure.mjs
//
// The node must not rate-limit messages (`[settings] message_rate_limit = 0` in its config):
// the 10,000 messages are sent through the API by the page's own client first. Prints one JSON
// object. Every wait is bounded.

import { chromium } from "playwright-core";
import { readFileSync, readdirSync } from "node:fs";
import { gzipSync } from "node:zlib";

const NODE = (process.env.GUILDHALL_NODE ?? "").replace(/\/+$/, "");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const HISTORY = Number(process.env.GUILDHALL_MEASURE_HISTORY ?? 10_000);
const LIVE = Number(process.env.GUILDHALL_MEASURE_LIVE ?? 1_000);
if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(NODE)) {
  console.error("set GUILDHALL_NODE to a running node (message_rate_limit = 0), e.g. http://127.0.0.1:40123");
  process.exit(2);
}
const watchdog = setTimeout(() => {
  console.error("measure: took over 15 minutes; giving up");
  process.exit(1);
}, 15 * 60_000);

const dist = new URL("../dist/", import.meta.url).pathname;
const bundle = {};
for (const f of readdirSync(dist)) {
  const bytes = readFileSync(dist + f);
  bundle[f] = { bytes: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
}
const total = Object.values(bundle).reduce((a, b) => ({ bytes: a.bytes + b.bytes, gzip: a.gzip + b.gzip }), { bytes: 0, gzip: 0 });

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--enable-precise-memory-info"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
context.setDefaultTimeout(30_000);
const page = await context.newPage();
page.on("pageerror", (e) => console.error(`page error: ${e.message}`));

// A user, a guild, and HISTORY messages in its #general, sent by the page's client.
await page.goto(`${NODE}/`);
await page.getByLabel("Display name").fill("Measurer");
await page.getByRole("button", { name: "Create account" }).click();
await page.getByRole("heading", { name: "Guilds" }).waitFor();
const limit = await page.evaluate(async () => (await window.guildhall.account.home().api.getServerSettings({})).messageRateLimit);
if (limit !== 0) {
  console.error(`the node limits messages (message_rate_limit = ${limit}); start it with [settings] message_rate_limit = 0`);
  process.exit(2);
}
await page.getByRole("button", { name: "New guild" }).click();
await page.getByLabel("Guild name").fill("Ten thousand");
await page.getByRole("button", { name: "Create", exact: true }).click();
await page.getByRole("heading", { name: /# general/ }).waitFor();
const fillStart = Date.now();
const channelId = await page.evaluate(async (n) => {
  const app = window.guildhall;
  const cv = app.channels.get(app.current.channel);
  const api = cv.server.api;
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      await api.sendMessage({ channelId: cv.channel.id, text: `history message ${i + 1} of ${n}`, idempotencyKey: `m${i}` });
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return cv.channel.id;
}, HISTORY);
const fillSecs = (Date.now() - fillStart) / 1000;

// Load to first message: a fresh page (same browser profile, so same account) opens the guild.
const fresh = await context.newPage();
await fresh.goto(`${NODE}/`);
await fresh.locator("article.msg .text", { hasText: `history message ${HISTORY} of ${HISTORY}` }).waitFor({ timeout: 60_000 });
const firstMessageMs = await fresh.evaluate(() => Math.round(performance.now()));
const shownAfterLoad = await fresh.locator("article.msg").count();

// LIVE messages arriving while the fresh page watches the channel.
const cdp = await context.newCDPSession(fresh);
await cdp.send("HeapProfiler.collectGarbage");
const heapBefore = (await cdp.send("Runtime.getHeapUsage")).usedSize;
const liveStart = Date.now();
await page.evaluate(
  async ({ n, channelId }) => {
    const api = window.guildhall.account.home().api;
    for (let i = 0; i < n; i++) await api.sendMessage({ channelId, text: `live message ${i + 1} of ${n}`, idempotencyKey: `l${i}` });
  },
  { n: LIVE, channelId },
);
await fresh.locator("article.msg .text", { hasText: `live message ${LIVE} of ${LIVE}` }).waitFor({ timeout: 120_000 });
const liveSecs = (Date.now() - liveStart) / 1000;
await cdp.send("HeapProfiler.collectGarbage");
const heapAfter = (await cdp.send("Runtime.getHeapUsage")).usedSize;
const dom = await fresh.evaluate(() => ({ elements: document.getElementsByTagName("*").length, messages: document.querySelectorAll("article.msg").length }));
const metrics = Object.fromEntries((await cdp.send("Performance.getMetrics").catch(() => ({ metrics: [] }))).metrics?.map((m) => [m.name, m.value]) ?? []);

clearTimeout(watchdog);
await browser.close();
console.log(
  JSON.stringify(
    {
      bundle: { files: bundle, total },
      history: { messages: HISTORY, fill_secs: fillSecs, first_message_ms: firstMessageMs, messages_drawn_at_first_paint: shownAfterLoad },
      live: {
        messages: LIVE,
        secs: liveSecs,
        js_heap_before_bytes: heapBefore,
        js_heap_after_bytes: heapAfter,
        dom_elements: dom.elements,
        messages_in_dom: dom.messages,
        documents: metrics.Documents,
        nodes: metrics.Nodes,
      },
    },
    null,
    2,
  ),
);
