// End-to-end test of the web client in headless Chromium against two running nodes.
//
//   GUILDHALL_NODE_A=http://127.0.0.1:PORT_A GUILDHALL_NODE_B=http://127.0.0.1:PORT_B \
//   CHROMIUM=/usr/bin/chromium node e2e/run.mjs
//
// Ada registers on A, creates a guild and an invite; Bob (a phone-sized window) opens the link and
// joins as a new user of A; they chat both ways, react, edit, upload an image; Bob's network drops
// and comes back, and he reloads, each time without gaps or duplicates. Cy registers on B, opens
// A's invite link, is sent to B's page and joins A's guild from there (a remote join), and chats.
// Every wait is bounded; the script exits 0 only if every step passed. With
// GUILDHALL_SCREENSHOTS=1 it saves the main screens to ../docs/screenshots/.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { deflateSync } from "node:zlib";

const A = (process.env.GUILDHALL_NODE_A ?? "").replace(/\/+$/, "");
const B = (process.env.GUILDHALL_NODE_B ?? "").replace(/\/+$/, "");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = process.env.GUILDHALL_SCREENSHOTS === "1";
const WAIT = Number(process.env.GUILDHALL_E2E_WAIT_MS ?? 20_000);
const TOTAL_MS = 240_000;

if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(A) || !/^http:\/\/127\.0\.0\.1:\d+$/.test(B)) {
  console.error("set GUILDHALL_NODE_A and GUILDHALL_NODE_B to two running nodes, e.g. http://127.0.0.1:40123");
  process.exit(2);
}

const shotsDir = new URL("../../docs/screenshots/", import.meta.url).pathname;
const outDir = new URL("./out/", import.meta.url).pathname;
mkdirSync(outDir, { recursive: true });
if (SHOTS) mkdirSync(shotsDir, { recursive: true });

const watchdog = setTimeout(() => {
  console.error(`FAIL: the whole run took over ${TOTAL_MS / 1000} s`);
  process.exit(1);
}, TOTAL_MS);

let passed = 0;
const pages = [];

async function step(name, run) {
  const t0 = Date.now();
  try {
    await run();
    passed++;
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e?.message ?? e}`);
    for (const [who, p] of pages) await p.screenshot({ path: `${outDir}${who}-failure.png` }).catch(() => undefined);
    console.log(`${passed} passed, 1 failed`);
    process.exit(1);
  }
}

async function shot(page, name) {
  if (SHOTS) await page.screenshot({ path: `${shotsDir}${name}.png` });
}

/** A PNG of `w`×`h` pixels in two colours, made here (no fixture files). */
function png(w, h) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  const rows = [];
  for (let y = 0; y < h; y++) {
    const row = Buffer.alloc(1 + w * 3);
    for (let x = 0; x < w; x++) {
      const on = (x >> 4) % 2 === (y >> 4) % 2;
      row.set(on ? [44, 95, 208] : [255, 176, 0], 1 + x * 3);
    }
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.concat(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

async function person(who, viewport) {
  const context = await browser.newContext({ viewport });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  page.on("pageerror", (e) => console.log(`  [${who}] page error: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && console.log(`  [${who}] console: ${m.text()}`));
  page.on("dialog", (d) => d.accept());
  pages.push([who, page]);
  return { context, page };
}

/** The message whose own text (not a quote of it) contains `text`; fails unless exactly one is shown. */
async function seesOnce(page, text) {
  const msg = page.locator("article.msg").filter({ has: page.locator(":scope > .text", { hasText: text }) });
  await msg.first().waitFor({ state: "visible" });
  const n = await msg.count();
  if (n !== 1) throw new Error(`"${text}" is shown ${n} times`);
  return msg.first();
}

async function send(page, text) {
  const box = page.getByRole("textbox", { name: /^Message/ });
  await box.fill(text);
  await box.press("Enter");
}

/** Opens a message's actions (hover on a wide window, focus on a phone) and clicks one. */
async function act(page, msg, action) {
  await msg.hover();
  await msg.focus();
  await msg.getByRole("button", { name: action, exact: true }).click();
}

const ada = await person("ada", { width: 1280, height: 800 });
const bob = await person("bob", { width: 390, height: 844 });
const cy = await person("cy", { width: 1024, height: 768 });
let invite = "";

await step("Ada registers on A", async () => {
  await ada.page.goto(`${A}/`);
  await shot(ada.page, "welcome");
  await ada.page.getByLabel("Display name").fill("Ada");
  await ada.page.getByRole("button", { name: "Create account" }).click();
  await ada.page.getByRole("heading", { name: "Guilds" }).waitFor();
  const icon = await ada.page.evaluate(async () => {
    const r = await fetch(document.querySelector("link[rel=icon]").href);
    return `${r.status} ${r.headers.get("content-type")}`;
  });
  if (icon !== "200 image/svg+xml") throw new Error(`the page's icon answers ${icon}`);
});

await step("Ada creates a guild; #general opens", async () => {
  await ada.page.getByRole("button", { name: "New guild" }).click();
  await ada.page.getByLabel("Guild name").fill("Analytical Engines");
  await ada.page.getByRole("button", { name: "Create", exact: true }).click();
  await ada.page.getByRole("heading", { name: /# general/ }).waitFor();
});

await step("Ada makes an invite link", async () => {
  await ada.page.getByRole("button", { name: "Invite people" }).click();
  await ada.page.getByRole("button", { name: "Create invite link" }).click();
  const link = ada.page.getByRole("textbox", { name: "Invite link" });
  await link.waitFor();
  invite = await link.inputValue();
  if (!invite.startsWith(`${A}/invite/`)) throw new Error(`unexpected invite link ${invite}`);
  await shot(ada.page, "invite");
  await ada.page.keyboard.press("Escape");
});

await step("Bob opens the link on a phone and joins as a new user of A", async () => {
  await bob.page.goto(invite);
  await bob.page.getByText("You are invited to").waitFor();
  await shot(bob.page, "invite-welcome-phone");
  await bob.page.getByLabel("Display name").fill("Bob");
  await bob.page.getByRole("button", { name: "Create account and join" }).click();
  await bob.page.getByRole("heading", { name: /# general/ }).waitFor();
});

await step("chat both ways", async () => {
  await send(ada.page, "hello from Ada");
  await seesOnce(bob.page, "hello from Ada");
  const box = bob.page.getByRole("textbox", { name: /^Message/ });
  await box.fill("hi Ada, Bob here");
  await ada.page.getByText("Bob is typing…").waitFor();
  await box.press("Enter");
  await seesOnce(ada.page, "hi Ada, Bob here");
  await ada.page.getByText("Bob is typing…").waitFor({ state: "hidden" });
});

await step("Bob reacts; Ada sees the reaction", async () => {
  const msg = await seesOnce(bob.page, "hello from Ada");
  await act(bob.page, msg, "React");
  await bob.page.getByRole("button", { name: "React 👍" }).click();
  await (await seesOnce(ada.page, "hello from Ada")).getByRole("button", { name: /👍 1/ }).waitFor();
});

await step("Ada replies mentioning Bob; Bob sees the mention", async () => {
  const msg = await seesOnce(ada.page, "hi Ada, Bob here");
  await act(ada.page, msg, "Reply");
  const box = ada.page.getByRole("textbox", { name: /^Message/ });
  await box.fill("welcome @Bo");
  await ada.page.getByRole("option", { name: "Bob" }).click();
  await box.press("End");
  await box.type("glad you came");
  await box.press("Enter");
  const got = await seesOnce(bob.page, "glad you came");
  await got.locator(".mention.me", { hasText: "@Bob" }).waitFor();
  await got.locator(".reply-quote", { hasText: "Bob" }).waitFor();
});

await step("Ada edits her message; Bob sees the edit", async () => {
  const msg = await seesOnce(ada.page, "hello from Ada");
  await act(ada.page, msg, "Edit");
  const box = ada.page.getByRole("textbox", { name: /^Message/ });
  await box.fill("hello from Ada, edited");
  await box.press("Enter");
  const edited = await seesOnce(bob.page, "hello from Ada, edited");
  await edited.getByText("(edited)").waitFor();
});

await step("Ada uploads an image; Bob sees it load", async () => {
  await ada.page.locator('input[type=file][aria-label="Attach a file"]').setInputFiles({ name: "plan.png", mimeType: "image/png", buffer: png(400, 300) });
  const img = bob.page.locator("article.msg img").last();
  await img.waitFor();
  await bob.page.waitForFunction((el) => el.complete && el.naturalWidth === 400, await img.elementHandle(), { timeout: WAIT });
  await shot(ada.page, "chat");
});

await step("Bob's network drops; what Ada sends meanwhile arrives once", async () => {
  const connects = () => bob.page.evaluate(() => [...window.guildhall.streams.values()].reduce((n, s) => n + s.connects, 0));
  const before = await connects();
  await bob.context.setOffline(true);
  // Going offline leaves an open response alone; drop it as a broken connection would.
  await bob.page.evaluate(() => window.guildhall.streams.forEach((s) => s.interrupt()));
  await send(ada.page, "sent while Bob was offline");
  await seesOnce(ada.page, "sent while Bob was offline");
  await bob.page.waitForTimeout(1500);
  await bob.context.setOffline(false);
  await seesOnce(bob.page, "sent while Bob was offline");
  const after = await connects();
  if (after <= before) throw new Error("Bob's event stream never reconnected");
  console.log(`  Bob's event stream reconnected (${after - before} attempt(s)) and resumed`);
});

await step("Bob reloads: history is back, nothing twice, and live messages still arrive", async () => {
  await bob.page.reload();
  await bob.page.getByRole("heading", { name: /# general/ }).waitFor();
  for (const t of ["hello from Ada, edited", "hi Ada, Bob here", "glad you came", "sent while Bob was offline"]) await seesOnce(bob.page, t);
  await send(ada.page, "after your reload");
  await seesOnce(bob.page, "after your reload");
  await shot(bob.page, "chat-phone");
  await bob.page.getByRole("button", { name: "Members" }).click();
  await bob.page.getByRole("heading", { name: /Members \(2\)/ }).waitFor();
  await shot(bob.page, "members-phone");
});

await step("scroll-back: Bob pages back through history to the channel's start", async () => {
  // 60 more messages, so the channel no longer fits one page (50) of GetHistory.
  await ada.page.evaluate(async () => {
    const app = window.guildhall;
    const cv = app.channels.get(app.current.channel);
    for (let i = 1; i <= 60; i++) await cv.server.api.sendMessage({ channelId: cv.channel.id, text: `filler #${i}.`, idempotencyKey: `filler-${i}` });
  });
  await bob.page.getByRole("button", { name: "Back to chat" }).click();
  await seesOnce(bob.page, "filler #60.");
  await bob.page.reload();
  await seesOnce(bob.page, "filler #60.");
  if ((await bob.page.locator(".start").count()) !== 0) throw new Error("the start is shown before scrolling back");
  const log = bob.page.getByRole("log");
  for (let i = 0; i < 20 && (await bob.page.locator(".start").count()) === 0; i++) {
    await log.evaluate((el) => (el.scrollTop = 0));
    await bob.page.waitForTimeout(250);
  }
  await bob.page.getByText("This is the start of #general.").waitFor();
  for (const t of ["hello from Ada, edited", "filler #1.", "filler #30.", "filler #60."]) await seesOnce(bob.page, t);
});

await step("a folder with a channel appears in the channel list, live", async () => {
  await ada.page.evaluate(async () => {
    const app = window.guildhall;
    const gv = app.currentGuild();
    const f = await gv.server.api.createFolder({ guildId: gv.guild.id, name: "Workshop" });
    await gv.server.api.createChannel({ guildId: gv.guild.id, folderId: f.id, name: "lathes" });
  });
  for (const p of [ada.page, bob.page]) {
    if (p === bob.page) await bob.page.getByRole("button", { name: "Back to guilds and channels" }).click();
    const list = p.getByRole("list", { name: "Workshop" });
    await list.getByRole("button", { name: "# lathes" }).waitFor();
  }
  await bob.page.getByRole("button", { name: "# general" }).click();
});

await step("Ada makes a folder (inside Workshop) and moves a new channel into it, all in the UI; Bob sees it live", async () => {
  await ada.page.getByRole("button", { name: "New folder" }).click();
  let dlg = ada.page.getByRole("dialog", { name: "Create a folder" });
  await dlg.getByLabel("Folder name").fill("Archive");
  await dlg.getByLabel("Inside folder").selectOption({ label: "Workshop" });
  await dlg.getByRole("button", { name: "Create folder" }).click();
  await ada.page.getByRole("heading", { name: "Archive" }).waitFor();
  await ada.page.getByRole("button", { name: "New channel" }).click();
  dlg = ada.page.getByRole("dialog", { name: "Create a channel" });
  await dlg.getByLabel("Channel name").fill("minutes");
  await dlg.getByRole("button", { name: "Create", exact: true }).click();
  await ada.page.getByRole("heading", { name: /# minutes/ }).waitFor();
  await ada.page.getByRole("button", { name: "Channel settings" }).click();
  dlg = ada.page.getByRole("dialog", { name: "# minutes settings" });
  await dlg.getByLabel("Folder").selectOption({ label: "Workshop / Archive" });
  await dlg.getByRole("button", { name: "Save" }).click();
  await bob.page.getByRole("button", { name: "Back to guilds and channels" }).click();
  for (const p of [ada.page, bob.page]) {
    const archive = p.getByRole("list", { name: "Workshop" }).getByRole("list", { name: "Archive" });
    await archive.getByRole("button", { name: "# minutes" }).waitFor();
  }
  for (const p of [ada.page, bob.page]) await p.getByRole("button", { name: "# general" }).click();
});

await step("Ada renames that folder, then deletes it: its channel moves up a level, for Bob too, live", async () => {
  await bob.page.getByRole("button", { name: "Back to guilds and channels" }).click();
  await ada.page.getByRole("button", { name: "Folder Archive settings" }).click();
  let dlg = ada.page.getByRole("dialog", { name: "Archive settings" });
  await dlg.getByLabel("Folder name").fill("Old minutes");
  await dlg.getByRole("button", { name: "Save" }).click();
  for (const p of [ada.page, bob.page]) {
    await p.getByRole("list", { name: "Old minutes" }).getByRole("button", { name: "# minutes" }).waitFor();
  }
  await ada.page.getByRole("button", { name: "Folder Old minutes settings" }).click();
  dlg = ada.page.getByRole("dialog", { name: "Old minutes settings" });
  await dlg.getByRole("button", { name: "Delete folder" }).click();
  for (const p of [ada.page, bob.page]) {
    await p.getByRole("heading", { name: "Old minutes", exact: true }).waitFor({ state: "detached" });
    await p.getByRole("list", { name: "Workshop" }).getByRole("button", { name: "# minutes" }).waitFor();
  }
  for (const p of [ada.page, bob.page]) await p.getByRole("button", { name: "# general" }).click();
});

await step("Bob starts a thread from a message; Ada opens it from that message and they talk there", async () => {
  await act(bob.page, await seesOnce(bob.page, "filler #60."), "Start thread");
  const dlg = bob.page.getByRole("dialog", { name: "Start a thread" });
  await dlg.getByLabel("Thread name").fill("lathe questions");
  await dlg.getByRole("button", { name: "Start thread" }).click();
  await bob.page.getByRole("heading", { name: /↳ lathe questions/ }).waitFor();
  await send(bob.page, "which lathe first?");
  await seesOnce(bob.page, "which lathe first?");
  await (await seesOnce(ada.page, "filler #60.")).getByRole("button", { name: "Open thread lathe questions" }).click();
  await ada.page.getByRole("heading", { name: /↳ lathe questions/ }).waitFor();
  await ada.page.getByText("This thread started from Ada: “filler #60.”").waitFor();
  await seesOnce(ada.page, "which lathe first?");
  await ada.page.getByRole("list", { name: "Threads of general" }).getByRole("button", { name: "↳ lathe questions" }).waitFor();
  await send(ada.page, "the small one");
  await seesOnce(bob.page, "the small one");
  await shot(ada.page, "thread");
  await shot(bob.page, "thread-phone");
  for (const p of [ada.page, bob.page]) await p.getByRole("button", { name: "thread in #general" }).click();
  await bob.page.getByRole("heading", { name: /# general/ }).waitFor();
});

await step("Bob searches on his phone: a word in #general opens its message 60 messages back; a word everywhere opens the thread", async () => {
  await bob.page.reload();
  await seesOnce(bob.page, "filler #60.");
  await bob.page.getByRole("button", { name: "Search messages" }).click();
  const dlg = bob.page.getByRole("dialog", { name: "Search messages" });
  await dlg.getByLabel("Search for").fill("edited");
  await dlg.getByRole("button", { name: "Search", exact: true }).click();
  await dlg.getByText("1 message found, newest first.").waitFor();
  await shot(bob.page, "search-phone");
  await dlg.getByRole("list", { name: "Search results" }).getByRole("button", { name: /hello from Ada, edited/ }).click();
  await seesOnce(bob.page, "hello from Ada, edited");
  await bob.page.waitForFunction(() => document.activeElement?.matches("article.msg.found") && document.activeElement.textContent.includes("hello from Ada, edited"), undefined, { timeout: WAIT });
  await bob.page.getByRole("button", { name: "Search messages" }).click();
  await dlg.getByLabel("Search for").fill("lathe");
  await dlg.getByLabel("Where").selectOption("server");
  await dlg.getByRole("button", { name: "Search", exact: true }).click();
  await dlg.getByRole("list", { name: "Search results" }).getByRole("button", { name: /which lathe first\?/ }).click();
  await bob.page.getByRole("heading", { name: /↳ lathe questions/ }).waitFor();
  await seesOnce(bob.page, "which lathe first?");
  await bob.page.getByRole("button", { name: "thread in #general" }).click();
});

await step("Ada opens a DM with Bob; Bob accepts the invite and they talk there", async () => {
  await ada.page.getByRole("button", { name: /^Bob,/ }).click();
  await ada.page.getByRole("button", { name: "Send a direct message" }).click();
  await ada.page.getByRole("textbox", { name: "Message", exact: true }).waitFor();
  await send(ada.page, "a private word, Bob");
  await seesOnce(ada.page, "a private word, Bob");
  await bob.page.getByRole("button", { name: "Back to guilds and channels" }).click();
  await bob.page.getByRole("button", { name: "DM invites (1)" }).click();
  const dlg = bob.page.getByRole("dialog", { name: "DM invites" });
  await dlg.getByRole("button", { name: "Accept" }).click();
  await seesOnce(bob.page, "a private word, Bob");
  await send(bob.page, "private reply to Ada");
  await seesOnce(ada.page, "private reply to Ada");
  await ada.page.locator(`button.guild[data-guild="Analytical Engines"]`).click();
  await bob.page.getByRole("button", { name: "Back to guilds and channels" }).click();
  await bob.page.locator(`button.guild[data-guild="Analytical Engines"]`).click();
  await bob.page.getByRole("heading", { name: /# general/ }).waitFor();
});

await step("Cy registers on B", async () => {
  await cy.page.goto(`${B}/`);
  await cy.page.getByLabel("Display name").fill("Cy");
  await cy.page.getByRole("button", { name: "Create account" }).click();
  await cy.page.getByRole("heading", { name: "Guilds" }).waitFor();
});

await step("Cy opens A's invite link, goes to B's page and joins from there (remote join)", async () => {
  await cy.page.goto(invite);
  await cy.page.getByLabel("Your homeserver").fill(B);
  await cy.page.getByRole("button", { name: "Continue there" }).click();
  await cy.page.waitForURL(new RegExp(`^${B}/invite/`));
  const join = cy.page.getByRole("dialog", { name: /Join Analytical Engines/ });
  await join.waitFor();
  await join.getByText("vouches for you").waitFor();
  await shot(cy.page, "remote-join");
  await join.getByRole("button", { name: "Join" }).click();
  await cy.page.getByRole("heading", { name: /# general/ }).waitFor();
  await seesOnce(cy.page, "filler #60.");
});

await step("Cy (homeserver B) and Ada (on A) chat both ways", async () => {
  await send(cy.page, "hello from node B");
  await seesOnce(ada.page, "hello from node B");
  await send(ada.page, "welcome across nodes");
  await seesOnce(cy.page, "welcome across nodes");
  await ada.page.getByRole("button", { name: /^Cy,/ }).waitFor();
  await shot(ada.page, "members");
});

await step("Ada opens a DM with Cy across nodes; Cy accepts on B and they talk", async () => {
  await ada.page.getByRole("button", { name: /^Cy,/ }).click();
  await ada.page.getByRole("button", { name: "Send a direct message" }).click();
  await ada.page.getByRole("textbox", { name: "Message", exact: true }).waitFor();
  await send(ada.page, "hello Cy, privately");
  await seesOnce(ada.page, "hello Cy, privately");
  // The invite travels A → B through A's outbox; the button counts it when it arrives.
  await cy.page.getByRole("button", { name: "DM invites (1)" }).click();
  const dlg = cy.page.getByRole("dialog", { name: "DM invites" });
  await dlg.getByRole("button", { name: "Accept" }).click({ timeout: WAIT });
  await seesOnce(cy.page, "hello Cy, privately");
  await send(cy.page, "hi Ada, from B, privately");
  await seesOnce(ada.page, "hi Ada, from B, privately");
});

await step("Ada links a second browser through the mailbox, comparing fingerprints", async () => {
  const second = await person("ada-laptop", { width: 1024, height: 768 });
  const userId = await ada.page.evaluate(() => window.guildhall.account.userId);
  await second.page.goto(`${A}/`);
  await second.page.getByLabel(/^Your user id/).fill(userId);
  await second.page.getByRole("button", { name: "Get a link code" }).click();
  const code = await second.page.getByLabel("Link code").textContent();
  const print = await second.page.getByLabel("Fingerprint").textContent();
  await ada.page.getByRole("button", { name: /^Your profile/ }).click();
  await ada.page.getByRole("button", { name: "Link a new device" }).click();
  const dlg = ada.page.getByRole("dialog", { name: "Link a new device" });
  await dlg.getByLabel("Link code shown on the new device").fill(code);
  await dlg.getByRole("button", { name: "Find the device" }).click();
  await dlg.getByText(print, { exact: true }).waitFor();
  await dlg.getByRole("button", { name: "They match: link it" }).click();
  await second.page.getByRole("heading", { name: "Guilds" }).waitFor();
  await second.page.getByRole("heading", { name: /# general/ }).waitFor();
  await seesOnce(second.page, "welcome across nodes");
  await ada.page.keyboard.press("Escape");
});

await step("unread: a message in another channel marks it unread for Bob, reading it clears it", async () => {
  await ada.page.locator(`button.guild[data-guild="Analytical Engines"]`).click();
  await ada.page.getByRole("button", { name: "# lathes" }).click();
  await send(ada.page, "news in lathes");
  const lathes = bob.page.locator(`button.channel[data-channel="lathes"]`);
  await bob.page.locator(`button.channel.unread[data-channel="lathes"]`).waitFor({ state: "attached" });
  await bob.page.getByRole("button", { name: "Back to guilds and channels" }).click();
  await lathes.click();
  await seesOnce(bob.page, "news in lathes");
  await bob.page.locator(`button.channel.unread[data-channel="lathes"]`).waitFor({ state: "detached" });
});

await step("Cy renames herself at B (a signed update-user-v2); A shows the new name", async () => {
  await cy.page.getByRole("button", { name: /^Your profile/ }).click();
  const dlg = cy.page.getByRole("dialog", { name: "Your profile" });
  await dlg.getByLabel("Display name").fill("Cy Twain");
  await dlg.getByLabel("Pronouns").fill("she/her");
  await dlg.getByRole("button", { name: "Save profile" }).click();
  await cy.page.getByText("Profile saved").waitFor();
  await cy.page.keyboard.press("Escape");
  await ada.page.getByRole("button", { name: /^Cy Twain,/ }).waitFor();
});

await step("Ada exports her identity file; a new browser imports it as a new device", async () => {
  await ada.page.getByRole("button", { name: /^Your profile/ }).click();
  const [download] = await Promise.all([ada.page.waitForEvent("download"), ada.page.getByRole("button", { name: "Export identity file" }).click()]);
  const path = `${outDir}identity.json`;
  await download.saveAs(path);
  const file = JSON.parse(await (await import("node:fs/promises")).readFile(path, "utf8"));
  const userId = await ada.page.evaluate(() => window.guildhall.account.userId);
  if (file.user_id !== userId || !/^[0-9a-f]{64}$/.test(file.id_secret) || file.sessions) throw new Error("the exported file is not Ada's identity without sessions");
  await ada.page.keyboard.press("Escape");
  const fresh = await person("ada-import", { width: 1024, height: 768 });
  await fresh.page.goto(`${A}/`);
  await fresh.page.getByLabel(/^Identity file/).setInputFiles(path);
  await fresh.page.getByRole("button", { name: "Import and sign in" }).click();
  await fresh.page.getByRole("heading", { name: "Guilds" }).waitFor();
  await fresh.page.locator(`button.guild[data-guild="Analytical Engines"]`).waitFor();
  const devices = await fresh.page.evaluate(async () => (await window.guildhall.account.home().api.getMyData({})).deviceCertificates.length);
  if (devices < 3) throw new Error(`Ada has ${devices} devices; the import should have added one`);
});

await step("Ada kicks Bob; Bob's client drops the guild", async () => {
  await ada.page.getByRole("button", { name: /^Bob,/ }).click();
  await ada.page.getByRole("dialog").getByRole("button", { name: "Kick" }).click();
  await bob.page.getByText("You are no longer in Analytical Engines").waitFor();
  await bob.page.locator(`button.guild[data-guild="Analytical Engines"]`).waitFor({ state: "detached" });
});

clearTimeout(watchdog);
await browser.close();
console.log(`${passed} passed, 0 failed`);
