// The agent workspace in Chromium against a real parleyd on plain HTTP/1.1
// (no TLS, so the browser has six connections to the host): an agent
// holding 8 chats keeps working over its one stream; a network drop
// recovers with nothing lost or doubled; hostile names, messages and file
// names stay inert; the supervisor view follows the queues live.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer, connect, type Server, type Socket } from "node:net";
import { after, before, test } from "node:test";

import type { Browser, BrowserContext, Locator, Page } from "playwright-core";

import { Channel, Presence, StaffRole, createParleyClient, retryDelayMs, type ParleyClient } from "../src/index.js";
import { DEMO, launchBrowser, startParleyd, type Parleyd } from "./harness.js";

let parleyd: Parleyd;
let browser: Browser;
/** parleyd's address, for the node clients. */
let api: string;
/** The address the browser uses: a TCP proxy to parleyd that the tests can cut. */
let base: string;
let proxy: Proxy;
let admin: ParleyClient;
let agentToken: string;
let agentId: string;
let agentClient: ParleyClient;
let context: BrowserContext;
let page: Page;
const dialogs: string[] = [];
const streamRequests: string[] = [];
const streamBodies: Buffer[] = [];

interface Guest {
  id: string;
  name: string;
  client: ParleyClient;
}

before(async () => {
  parleyd = await startParleyd();
  api = parleyd.url;
  proxy = await startProxy(new URL(api));
  base = proxy.url;
  browser = await launchBrowser();
  admin = createParleyClient(api, { token: DEMO.admin });
  // Many guests from one address: lift the per-address hourly limit.
  const { settings } = await admin.session.getSettings({});
  settings!.maxGuestSessionsPerHourPerAddress = 0;
  settings!.maxGuestSessionsPerHour = 1000;
  await admin.session.updateSettings({ settings });
  // An agent with room for every chat of this file, in every queue (the
  // demo agents stay offline, so every chat is offered to this one).
  const { queues } = await admin.routing.listQueues({});
  const created = await admin.routing.createAgent({ displayName: "Wanda Weaver", capacity: 30, queueIds: queues.map((q) => q.id) });
  agentToken = created.token;
  agentId = created.agent!.id;
  agentClient = createParleyClient(api, { token: agentToken });
  context = await browser.newContext();
  page = await context.newPage();
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  page.on("request", (r) => {
    if (/\/(FollowWork|Subscribe|WatchWork)$/.test(r.url())) {
      streamRequests.push(r.url());
      streamBodies.push(r.postDataBuffer() ?? Buffer.alloc(0));
    }
  });
});

after(async () => {
  await browser?.close();
  proxy?.server.close();
  await parleyd?.stop();
});

/** Starts a guest chat from node, straight to a queue (web portal chats skip the bot). */
async function startGuest(name: string, firstMessage: string, issueType = "billing"): Promise<Guest> {
  const anon = createParleyClient(api);
  const r = await anon.session.startGuestChat({
    requestId: randomUUID(), name, email: `guest-${randomUUID().slice(0, 8)}@example.com`, issueType, firstMessage, channel: Channel.WEB_PORTAL,
  });
  return { id: r.conversation!.id, name, client: createParleyClient(api, { token: r.guestToken }) };
}

/** Sends as a guest, waiting out the send rate limit as the server asks. */
async function guestSend(g: Guest, text: string, attachmentIds: string[] = []): Promise<void> {
  for (;;) {
    try {
      await g.client.messaging.sendMessage({ conversationId: g.id, clientMessageId: randomUUID(), text, attachmentIds });
      return;
    } catch (err) {
      const wait = retryDelayMs(err);
      if (wait === undefined) throw err;
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

/** Every message text in the conversation's log, as the guest reads it. */
async function guestTexts(g: Guest): Promise<string[]> {
  const texts: string[] = [];
  let pageToken = "";
  do {
    const page = await g.client.messaging.listEvents({ conversationId: g.id, pageSize: 500, pageToken });
    for (const e of page.events) if (e.kind.case === "messagePosted") texts.push(e.kind.value.text);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return texts;
}

/** Waits until the guest's log holds text (once), and returns how often it appears. */
async function guestSees(g: Guest, text: string, timeoutMs = 20_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const n = (await guestTexts(g)).filter((t) => t === text).length;
    if (n > 0 || Date.now() > deadline) return n;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function chat(p: Page, id: string): Locator {
  return p.locator(`section.chat[data-conversation="${id}"]`);
}

async function signIn(p: Page, token: string): Promise<void> {
  await p.goto(`${base}/workspace/`);
  await p.getByLabel("Agent or supervisor token").fill(token);
  await p.getByLabel("Start as").selectOption({ label: "Available" });
  await p.getByRole("button", { name: "Sign in" }).click();
  await p.locator("#conn[data-state=live]").waitFor({ timeout: 20_000 });
}

/** Accepts the guest's offer in the workspace and waits for its chat column. */
async function accept(p: Page, g: Guest): Promise<Locator> {
  await p.locator(`li.offer[data-conversation="${g.id}"]`).getByRole("button", { name: "Accept" }).click();
  const c = chat(p, g.id);
  await c.waitFor();
  return c;
}

/** Sends from the workspace and resolves with the ms until the message is stored. */
async function agentSend(c: Locator, text: string): Promise<number> {
  const t0 = Date.now();
  await c.getByRole("textbox").fill(text);
  await c.getByRole("textbox").press("Enter");
  await c.locator("li.msg.own:not(.pending) .text", { hasText: text }).first().waitFor({ timeout: 30_000 });
  return Date.now() - t0;
}

/** The seqs of a chat's shown events, in DOM order. */
async function seqs(c: Locator): Promise<number[]> {
  return (await c.locator("ol.log > li[data-seq]").evaluateAll((els) => els.map((e) => Number((e as HTMLElement).dataset.seq))));
}

interface Proxy {
  url: string;
  server: Server;
  /** Drops every open connection and refuses new ones until restore. */
  cut(): void;
  restore(): void;
}

/** A TCP proxy to target: a network the test can pull the plug on. */
function startProxy(target: URL): Promise<Proxy> {
  const sockets = new Set<Socket>();
  let down = false;
  const server = createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
    client.pipe(upstream).pipe(client);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as { port: number };
    resolve({
      url: `http://127.0.0.1:${port}`,
      server,
      cut() {
        down = true;
        for (const s of sockets) s.destroy();
        sockets.clear();
      },
      restore() {
        down = false;
      },
    });
  }));
}

/** Asserts a chat shows its whole log: seqs 1..n, in order, each once. */
function assertWhole(shown: number[], what: string): void {
  assert.deepEqual(shown, Array.from({ length: shown.length }, (_, i) => i + 1), `${what}: ${shown.join(",")}`);
}

const guests: Guest[] = [];

test("an agent holding 8 chats keeps working on plain HTTP/1.1", async () => {
  await signIn(page, agentToken);
  assert.equal(await page.locator("#chats section.chat").count(), 0);
  for (let i = 0; i < 8; i++) {
    const g = await startGuest(`Guest ${i + 1}`, `First message of guest ${i + 1}`, ["billing", "order", "product"][i % 3]);
    guests.push(g);
    // The offer shows its context and counts down.
    const offer = page.locator(`li.offer[data-conversation="${g.id}"]`);
    await offer.waitFor();
    assert.match(await offer.innerText(), new RegExp(`Guest ${i + 1}[\\s\\S]*First message of guest ${i + 1}[\\s\\S]*Expires in \\d:\\d\\d`));
    const c = await accept(page, g);
    await c.locator("li.msg .text", { hasText: `First message of guest ${i + 1}` }).waitFor();
  }
  assert.equal(await page.locator("#chats section.chat").count(), 8);
  assert.equal(await page.locator("#chat-tabs button").count(), 8);

  // Every chat receives and sends while all 8 are open.
  const latencies: number[] = [];
  for (const [i, g] of guests.entries()) {
    await guestSend(g, `Question ${i + 1} from the guest`);
    const c = chat(page, g.id);
    await c.locator("li.msg .text", { hasText: `Question ${i + 1} from the guest` }).waitFor();
    const badge = page.locator(`#chat-tabs button[data-conversation="${g.id}"] .badge`);
    // A chat that is not the active one counts what came in unseen...
    if (i > 0) await badge.filter({ hasText: /\d+ unread/ }).waitFor();
    latencies.push(await agentSend(c, `Answer ${i + 1} from Wanda`));
    // ...until the agent works in it.
    await badge.filter({ hasText: /^$/ }).waitFor({ state: "attached" });
    assert.equal(await guestSees(g, `Answer ${i + 1} from Wanda`), 1);
  }
  // Plain calls do not stall: each send finished, and ten concurrent
  // calls from the page all complete (one connection is the stream's).
  assert.ok(Math.max(...latencies) < 10_000, `sends took ${latencies.join(", ")} ms`);
  const burst = await page.evaluate(async () => {
    const t0 = performance.now();
    const token = sessionStorage.getItem("parley.workspace.token");
    const statuses = await Promise.all(Array.from({ length: 10 }, () =>
      fetch("/parley.v1.RoutingService/ListQueues", { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` }, body: "{}" }).then((r) => r.status)));
    return { statuses, ms: performance.now() - t0 };
  });
  assert.deepEqual(burst.statuses, Array(10).fill(200));
  assert.ok(burst.ms < 10_000, `ten plain calls took ${burst.ms} ms`);
  console.log(`8 chats: send latencies ${latencies.join(", ")} ms; ten concurrent calls ${Math.round(burst.ms)} ms`);
  // One stream for the whole desk: never one per chat.
  assert.ok(streamRequests.every((u) => u.endsWith("/FollowWork")), streamRequests.join("\n"));
  assert.equal(streamRequests.length, 1);

  // Typing both ways, and read receipts.
  const g0 = guests[0];
  await page.locator(`#chat-tabs button[data-conversation="${g0.id}"]`).click();
  await g0.client.messaging.setTyping({ conversationId: g0.id, typing: true });
  await chat(page, g0.id).locator(".typing", { hasText: "is typing" }).waitFor();
  const guestStream = g0.client.messaging.subscribe({ conversationId: g0.id, afterSeq: 0n }, { signal: AbortSignal.timeout(20_000) });
  let answerSeq = 0n;
  let replayed!: () => void;
  const replay = new Promise<void>((r) => (replayed = r));
  const typingSeen = (async () => {
    for await (const r of guestStream) {
      if (r.item.case === "event" && r.item.value.kind.case === "messagePosted" && r.item.value.kind.value.text === "Answer 1 from Wanda") {
        answerSeq = r.item.value.seq;
        replayed();
      }
      if (r.item.case === "typing" && r.item.value.typing && r.item.value.participant?.id === agentId) return true;
    }
    return false;
  })();
  await replay;
  // Typing goes out again every few seconds while it lasts (a signal sent
  // while the guest's stream was still replaying is not kept for it).
  const keys = chat(page, g0.id).getByRole("textbox").pressSequentially("typing a longer answer…", { delay: 300 });
  const sawTyping = await typingSeen;
  await keys;
  assert.ok(sawTyping, "the guest saw the agent typing");
  await chat(page, g0.id).getByRole("textbox").fill("");
  await g0.client.messaging.markRead({ conversationId: g0.id, requestId: randomUUID(), readSeq: answerSeq });
  await chat(page, g0.id).locator("li.msg.own.read .text", { hasText: "Answer 1 from Wanda" }).waitFor();
  // The agent's own read cursor reached the guest's question (the chat is active).
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { readCursors } = await g0.client.messaging.listReadCursors({ conversationId: g0.id });
    const mine = readCursors.find((rc) => rc.participant?.id === agentId);
    if (mine && mine.readSeq >= answerSeq - 1n) break;
    assert.ok(Date.now() < deadline, "the agent's read cursor did not move");
    await new Promise((r) => setTimeout(r, 100));
  }
});

test("a network drop recovers with nothing lost or doubled", async () => {
  const g = guests[1];
  const c = chat(page, g.id);
  await page.locator(`#chat-tabs button[data-conversation="${g.id}"]`).click();
  // The plug is pulled: open connections die (the stream with them) and
  // the browser knows it is offline.
  proxy.cut();
  await context.setOffline(true);
  await page.locator("#conn[data-state=offline]").waitFor();
  for (let i = 1; i <= 3; i++) await guestSend(g, `While you were away ${i}`);
  await c.getByRole("textbox").fill("Sent while offline");
  await c.getByRole("textbox").press("Enter");
  await c.locator("li.msg.own.pending", { hasText: "Sent while offline" }).waitFor();
  await new Promise((r) => setTimeout(r, 2000));
  proxy.restore();
  await context.setOffline(false);
  await page.locator("#conn[data-state=live]").waitFor({ timeout: 60_000 });
  for (let i = 1; i <= 3; i++) await c.locator("li.msg .text", { hasText: `While you were away ${i}` }).waitFor({ timeout: 30_000 });
  await c.locator("li.msg.own:not(.pending) .text", { hasText: "Sent while offline" }).waitFor({ timeout: 30_000 });
  assert.equal(await guestSees(g, "Sent while offline"), 1);
  for (let i = 1; i <= 3; i++) assert.equal(await c.locator("li.msg .text", { hasText: `While you were away ${i}` }).count(), 1);
  assertWhole(await seqs(c), "the dropped chat");
  assert.equal(await c.locator("li.msg.pending").count(), 0);
  // The drop cut the one stream, and it was opened again (with cursors).
  assert.ok(streamRequests.length >= 2, `FollowWork opened ${streamRequests.length} times`);
  // Every other chat is still whole after the drop.
  for (const other of guests) assertWhole(await seqs(chat(page, other.id)), other.name);
});

test("a reload resumes every chat from the stored cursors", async () => {
  const before = new Map<string, number[]>();
  for (const g of guests) before.set(g.id, await seqs(chat(page, g.id)));
  const opened = streamRequests.length;
  await page.reload();
  await page.locator("#conn[data-state=live]").waitFor({ timeout: 20_000 });
  // The new page's stream starts from the cursors kept in sessionStorage
  // (a Connect streaming request: one JSON message after a 5-byte prefix).
  assert.equal(streamRequests.length, opened + 1);
  const request = JSON.parse(streamBodies.at(-1)!.subarray(5).toString("utf8")) as { cursors?: { conversationId: string; afterSeq: string }[] };
  assert.deepEqual(new Set(request.cursors?.map((c) => c.conversationId)), new Set(guests.map((g) => g.id)));
  for (const c of request.cursors ?? []) assert.equal(Number(c.afterSeq), before.get(c.conversationId)!.at(-1));
  for (const g of guests) await chat(page, g.id).waitFor();
  // Keyboard only: arrows move along the chat switcher, Enter opens the chat's composer.
  // (After a reload the tabs come in the order the stream announced the
  // chats, which need not be the order they were accepted in.)
  const order = await page.locator("#chat-tabs button").evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.conversation!));
  const at = order.indexOf(guests[1].id);
  await page.locator(`#chat-tabs button[data-conversation="${order[(at - 1 + order.length) % order.length]}"]`).focus();
  await page.keyboard.press("ArrowRight");
  const second = page.locator(`#chat-tabs button[data-conversation="${guests[1].id}"]`);
  assert.equal(await second.evaluate((el) => el === document.activeElement), true);
  assert.equal(await second.getAttribute("aria-current"), "true");
  await page.keyboard.press("Enter");
  assert.equal(await chat(page, guests[1].id).getByRole("textbox").evaluate((el) => el === document.activeElement), true);
  await page.keyboard.type("Typed with the keyboard only");
  await page.keyboard.press("Enter");
  await chat(page, guests[1].id).locator("li.msg.own:not(.pending) .text", { hasText: "Typed with the keyboard only" }).waitFor();
  assert.equal(await guestSees(guests[1], "Typed with the keyboard only"), 1);
  // Enter on an offer's Accept puts the keyboard in the new chat's composer
  // once the chat is shown (not on the page, where typing goes nowhere).
  const kb = await startGuest("Keyboard guest", "Hello from the keyboard guest");
  const kbOffer = page.locator(`li.offer[data-conversation="${kb.id}"]`);
  await kbOffer.getByRole("button", { name: "Accept" }).focus();
  await page.keyboard.press("Enter");
  await chat(page, kb.id).waitFor();
  await page.waitForFunction((id) => document.activeElement?.id === `input-${id}`, kb.id, { timeout: 10_000 });
  assert.equal(await chat(page, kb.id).getByRole("textbox").evaluate((el) => el === document.activeElement), true);
  assert.equal(await page.locator(`#chat-tabs button[data-conversation="${kb.id}"]`).getAttribute("aria-current"), "true");
  await page.keyboard.type("Accepted with Enter");
  await page.keyboard.press("Enter");
  await chat(page, kb.id).locator("li.msg.own:not(.pending) .text", { hasText: "Accepted with Enter" }).waitFor();
  assert.equal(await guestSees(kb, "Accepted with Enter"), 1);
  // Enter on Decline: the keyboard goes to the next offer's Accept, and
  // after the last offer back to the active chat's composer.
  const [d1, d2] = [await startGuest("Declined first", "Decline me"), await startGuest("Declined second", "Decline me too")];
  for (const d of [d1, d2]) await page.locator(`li.offer[data-conversation="${d.id}"]`).waitFor();
  await page.locator(`li.offer[data-conversation="${d1.id}"]`).getByRole("button", { name: "Decline" }).focus();
  await page.keyboard.press("Enter");
  await page.locator(`li.offer[data-conversation="${d1.id}"]`).waitFor({ state: "detached" });
  await d1.client.session.closeConversation({ conversationId: d1.id, reason: "Declined in a test" });
  const d2Accept = page.locator(`li.offer[data-conversation="${d2.id}"]`).getByRole("button", { name: "Accept" });
  assert.equal(await d2Accept.evaluate((el) => el === document.activeElement), true);
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await page.locator(`li.offer[data-conversation="${d2.id}"]`).waitFor({ state: "detached" });
  await d2.client.session.closeConversation({ conversationId: d2.id, reason: "Declined in a test" });
  assert.equal(await chat(page, kb.id).getByRole("textbox").evaluate((el) => el === document.activeElement), true);

  await guestSend(guests[2], "After the reload");
  await chat(page, guests[2].id).locator("li.msg .text", { hasText: "After the reload" }).waitFor();
  for (const g of guests) {
    const c = chat(page, g.id);
    const want = before.get(g.id)!;
    // History before the cursor comes back from ListEvents, the rest from the stream.
    for (;;) {
      const s = await seqs(c);
      if (s.length >= want.length) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const s = await seqs(c);
    assert.deepEqual(s.slice(0, want.length), want);
    assertWhole(s, `${g.name} after the reload`);
  }
});

test("a chat transferred to a queue leaves the desk and comes back whole", async () => {
  const g = guests[3];
  const before = await seqs(chat(page, g.id));
  await page.locator(`#chat-tabs button[data-conversation="${g.id}"]`).click();
  await page.locator("#context h2", { hasText: g.name }).waitFor();
  await page.locator("#transfer-target option", { hasText: "Billing Support" }).waitFor({ state: "attached" });
  await page.locator("#transfer-target").selectOption({ label: "Billing Support" });
  await page.locator("#transfer-note").fill("Back to the queue, please");
  // With the keyboard: Enter on Transfer.
  await page.getByRole("button", { name: "Transfer", exact: true }).focus();
  await page.keyboard.press("Enter");
  // Released: the composer stops...
  await chat(page, g.id).locator(".notice", { hasText: "no longer hold" }).waitFor();
  assert.equal(await chat(page, g.id).getByRole("textbox").isDisabled(), true);
  // ...the context panel shows it ended, without its forms, and the
  // keyboard stays in the panel (on its heading) rather than on the page.
  await page.getByRole("form", { name: "Transfer" }).waitFor({ state: "detached" });
  await page.waitForFunction(() => document.activeElement === document.querySelector("#context .context-head h2"), undefined, { timeout: 10_000 });
  // ...and Wanda, the only agent available, is offered it again with the note.
  const offer = page.locator(`li.offer[data-conversation="${g.id}"]`);
  await offer.waitFor({ timeout: 20_000 });
  assert.match(await offer.innerText(), /transferred by an agent/);
  await offer.getByRole("button", { name: "Accept" }).focus();
  await page.keyboard.press("Enter");
  const c = chat(page, g.id);
  // Back with the agent: the keyboard goes to its composer...
  await page.waitForFunction((id) => document.activeElement?.id === `input-${id}`, g.id, { timeout: 20_000 });
  // ...and the context panel has its forms again, without a Refresh.
  for (const name of ["Transfer", "Case", "Close and wrap up"]) await page.getByRole("form", { name }).waitFor({ timeout: 10_000 });
  await page.getByRole("button", { name: "Close conversation" }).waitFor();
  // The column is the same one, its log now with the transfer and what followed.
  await c.locator("li.system", { hasText: "Queued in Billing Support (transfer)" }).waitFor();
  await c.getByRole("textbox").waitFor();
  assert.equal(await c.getByRole("textbox").isDisabled(), false);
  // Nothing lost, nothing twice.
  const after = await seqs(c);
  assert.deepEqual(after.slice(0, before.length), before);
  assertWhole(after, "the chat back from the queue");
  assert.equal(await page.locator(`section.chat[data-conversation="${g.id}"]`).count(), 1);
  await agentSend(c, "Still here after the transfer");
  assert.equal(await guestSees(g, "Still here after the transfer"), 1);
});

test("after an outage the desk shows what left it meanwhile and drops a stale offer", async () => {
  const moved = guests[4];
  const closed = guests[5];
  // A chat offered to Wanda that she leaves pending.
  const stale = await startGuest("Stale offer", "Is anyone there?");
  await page.locator(`li.offer[data-conversation="${stale.id}"]`).waitFor();
  const seenBefore = await seqs(chat(page, moved.id));
  const opened = streamRequests.length;

  proxy.cut();
  await context.setOffline(true);
  await page.locator("#conn[data-state=offline]").waitFor();
  // While the desk is away: a message in the chat that is then transferred
  // (by Wanda's token, from node) to Fred, who accepts and answers; the
  // other chat's guest closes it; the offered chat's guest gives up, which
  // withdraws the offer.
  await guestSend(moved, "Before the transfer");
  const fred = createParleyClient(api, { token: DEMO.agents.fred });
  const { agent } = await fred.routing.setPresence({ presence: Presence.AVAILABLE });
  try {
    const transfer = await agentClient.routing.transferConversation({
      conversationId: moved.id, requestId: randomUUID(), target: { case: "agentId", value: agent!.id }, note: "Over to Fred",
    });
    await fred.routing.acceptOffer({ offerId: transfer.offerId });
    await fred.messaging.sendMessage({ conversationId: moved.id, clientMessageId: randomUUID(), text: "Fred here now" });
  } finally {
    await fred.routing.setPresence({ presence: Presence.AWAY });
  }
  await guestSend(closed, "Bye, all sorted");
  await closed.client.session.closeConversation({ conversationId: closed.id, reason: "All sorted" });
  await stale.client.session.closeConversation({ conversationId: stale.id, reason: "Gave up" });
  await new Promise((r) => setTimeout(r, 1000));

  proxy.restore();
  await context.setOffline(false);
  await page.locator("#conn[data-state=live]").waitFor({ timeout: 60_000 });
  assert.ok(streamRequests.length > opened, "the stream was opened again");

  // The transferred chat: the rest up to Wanda leaving, then shown as left,
  // read-only; nothing of Fred's.
  const m = chat(page, moved.id);
  await m.locator(".notice", { hasText: "Transferred: you no longer hold this chat." }).waitFor({ timeout: 30_000 });
  await m.locator("li.msg .text", { hasText: "Before the transfer" }).waitFor();
  await m.locator("li.system", { hasText: "Transferred by Wanda Weaver: Over to Fred" }).waitFor();
  await m.locator("li.system", { hasText: "Wanda Weaver left." }).waitFor();
  assert.equal(await m.locator("li.msg .text", { hasText: "Fred here now" }).count(), 0);
  assert.equal(await m.getByRole("textbox").isDisabled(), true);
  assert.equal(await page.locator(`#chat-tabs button[data-conversation="${moved.id}"]`).getAttribute("class"), "ended");
  const shown = await seqs(m);
  assert.deepEqual(shown.slice(0, seenBefore.length), seenBefore);
  assertWhole(shown, "the transferred chat");
  assert.equal(await m.locator("li.system", { hasText: "Wanda Weaver left." }).evaluate((li) => li === li.parentElement!.lastElementChild), true);

  // The closed chat: its guest's last message and its closing event.
  const c = chat(page, closed.id);
  await c.locator("li.system", { hasText: "Closed: All sorted" }).waitFor({ timeout: 30_000 });
  await c.locator("li.msg .text", { hasText: "Bye, all sorted" }).waitFor();
  await c.locator(".notice", { hasText: "This conversation is closed." }).waitFor();
  assert.equal(await c.getByRole("textbox").isDisabled(), true);
  assertWhole(await seqs(c), "the closed chat");

  // The withdrawn offer is gone; the other chats are still held and whole.
  await page.locator(`li.offer[data-conversation="${stale.id}"]`).waitFor({ state: "detached", timeout: 30_000 });
  for (const g of [guests[0], guests[1], guests[2], guests[6], guests[7]]) {
    const other = chat(page, g.id);
    assert.equal(await other.getByRole("textbox").isDisabled(), false, g.name);
    assertWhole(await seqs(other), g.name);
  }
  // The next stream asks about neither: their cursors are forgotten.
  await page.reload();
  await page.locator("#conn[data-state=live]").waitFor({ timeout: 20_000 });
  const request = JSON.parse(streamBodies.at(-1)!.subarray(5).toString("utf8")) as { cursors?: { conversationId: string }[] };
  const named = new Set(request.cursors?.map((x) => x.conversationId));
  assert.ok(!named.has(moved.id) && !named.has(closed.id), [...named].join(","));
  assert.ok(named.has(guests[0].id));
});

// Payloads a hostile customer might type: none may become markup, run, or
// change an attribute.
const xss = [
  `<script>window.__xss=1</script>`,
  `<img src=x onerror="window.__xss=2">`,
  `<svg onload="window.__xss=3">`,
  `<svg><script>window.__xss=4</script></svg>`,
  `<iframe src="javascript:window.__xss=5"></iframe>`,
  `<a href="javascript:window.__xss=6">click me</a>`,
  `javascript:window.__xss=7`,
  `"><img src=x onerror=window.__xss=8>`,
  `'><svg onload=window.__xss=9>`,
  `" onmouseover="window.__xss=10" x="`,
  `' autofocus onfocus='window.__xss=11`,
  `</textarea><script>window.__xss=12</script>`,
  `</title><script>window.__xss=13</script>`,
  `<body onload=window.__xss=14>`,
  `<details open ontoggle=window.__xss=15>`,
  `<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=16>`,
  `<object data="data:text/html,<script>parent.__xss=17</script>">`,
  `<embed src="data:text/html;base64,PHNjcmlwdD5wYXJlbnQuX194c3M9MTg8L3NjcmlwdD4=">`,
  `<input onfocus=window.__xss=19 autofocus>`,
  `<style>*{display:none}</style>`,
  `<meta http-equiv="refresh" content="0;url=javascript:window.__xss=21">`,
  `\u003cimg src=x onerror=window.__xss=22\u003e`,
  `＜script＞window.__xss=23＜/script＞`,
  `<scr\u200bipt>window.__xss=24</scr\u200bipt>`,
  `\u202eגnp.exe<img src=x onerror=window.__xss=25>`,
  `{{constructor.constructor('window.__xss=26')()}}`,
  `\${window.__xss=27}`,
  `<!--<img src="--><img src=x onerror=window.__xss=28//">`,
  `<a href="&#x6A;avascript:window.__xss=29">entity</a>`,
  `<form action="javascript:window.__xss=30"><button>go</button></form>`,
];

test("hostile names, messages and file names stay inert", async () => {
  assert.ok(xss.length >= 25);
  const hostile: Guest[] = [];
  for (const name of xss.slice(0, 4)) {
    const g = await startGuest(name, xss[4], "order");
    hostile.push(g);
    const offer = page.locator(`li.offer[data-conversation="${g.id}"]`);
    await offer.waitFor();
    assert.equal(await offer.locator("h3").evaluate((e) => e.childElementCount), 0);
    assert.ok((await offer.innerText()).includes(name));
    await accept(page, g);
  }
  const [g, files] = hostile;
  for (const p of xss) await guestSend(g, p);
  // Attachment names: the server refuses "/" and control characters in them.
  const names = xss.filter((p) => !/[/\\\u0000-\u001f]/.test(p)).slice(0, 10).map((p) => `${p}.txt`);
  assert.ok(names.length >= 8);
  const ids: string[] = [];
  for (const filename of names) {
    const content = new TextEncoder().encode(`file ${filename}`);
    const digest = Buffer.from(await crypto.subtle.digest("SHA-256", content)).toString("hex");
    const up = await files.client.messaging.uploadAttachment({ conversationId: files.id, requestId: randomUUID(), filename, contentType: "text/plain", content, sha256: digest });
    ids.push(up.attachment!.id);
  }
  await guestSend(files, "Here are the files", ids);

  const c = chat(page, g.id);
  await c.locator("li.msg .text", { hasText: xss.at(-1)! }).waitFor();
  const texts = await c.locator("li.msg .text").allTextContents();
  for (const p of xss) assert.ok(texts.includes(p), `shown as text: ${p}`);
  const fc = chat(page, files.id);
  await fc.locator("li.msg .text", { hasText: "Here are the files" }).waitFor();
  const buttons = await fc.locator("button.download").allTextContents();
  for (const n of names) assert.ok(buttons.some((b) => b.includes(n)), `file name shown as text: ${n}`);
  // The context panel shows the hostile name as text too.
  await page.locator(`#chat-tabs button[data-conversation="${g.id}"]`).click();
  await page.locator("#context h2", { hasText: xss[0] }).waitFor();
  // A hostile file downloads with its content intact.
  const [download] = await Promise.all([page.waitForEvent("download"), fc.locator("button.download").first().click()]);
  const body = await download.createReadStream().then(async (s) => {
    let out = "";
    for await (const chunk of s) out += chunk;
    return out;
  });
  assert.equal(body, `file ${names[0]}`);

  // Nothing ran, and no element or handler came from the payloads.
  assert.equal(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss), undefined);
  assert.deepEqual(dialogs, []);
  const injected = await page.evaluate(() => {
    const bad: string[] = [];
    for (const el of document.querySelectorAll("#agent-view *")) {
      if (["SCRIPT", "IMG", "SVG", "IFRAME", "OBJECT", "EMBED", "STYLE", "META", "MATH", "DETAILS", "A", "BODY", "svg", "math"].includes(el.tagName)) bad.push(el.tagName);
      for (const a of el.getAttributeNames()) if (a.startsWith("on") || a === "style" || a === "href" || a === "src") bad.push(`${el.tagName}[${a}]`);
    }
    return bad;
  });
  assert.deepEqual(injected, []);
  assert.equal(await page.title(), "Parley workspace");
});

test("the supervisor view follows queues and agents live", async () => {
  const sup = await (await browser.newContext()).newPage();
  await sup.goto(`${base}/workspace/`);
  await sup.getByLabel("Agent or supervisor token").fill(DEMO.supervisor);
  await sup.getByRole("button", { name: "Sign in" }).click();
  await sup.locator("#conn[data-state=live]").waitFor({ timeout: 20_000 });
  const wanda = sup.locator(`#agent-rows tr[data-agent="${agentId}"]`);
  await wanda.locator(".presence", { hasText: "Available" }).waitFor();
  const { queues } = await admin.routing.listQueues({});
  const product = queues.find((q) => q.displayName === "Product Support")!;
  const row = sup.locator(`#queue-rows tr[data-queue="${product.id}"]`);
  await row.waitFor();
  const waitingBefore = Number(await row.locator(".waiting").innerText());

  // Wanda steps away: her row changes, and a new chat waits in its queue.
  await agentClient.routing.setPresence({ presence: Presence.AWAY });
  await wanda.locator(".presence", { hasText: "Away" }).waitFor();
  await startGuest("Late guest", "Anyone there?", "product");
  await row.locator(".waiting", { hasText: String(waitingBefore + 1) }).waitFor();
  await row.locator(".oldest", { hasText: /^0:\d\d$/ }).waitFor();

  // Signing out forgets the token.
  await sup.getByRole("button", { name: "Sign out" }).click();
  await sup.getByLabel("Agent or supervisor token").waitFor();
  assert.equal(await sup.evaluate(() => sessionStorage.length), 0);
  await sup.close();
});

test("a revoked token sends the agent back to the sign-in form", async () => {
  const issued = await admin.access.issueToken({ role: StaffRole.AGENT, agentId, label: "revoked in a browser test" });
  const p = await (await browser.newContext()).newPage();
  await signIn(p, issued.token);
  await admin.access.revokeToken({ tokenId: issued.info!.id });
  await p.locator("#signin-error", { hasText: "no longer accepted" }).waitFor({ timeout: 30_000 });
  assert.equal(await p.locator("#agent-view").isHidden(), true);
  assert.equal(await p.evaluate(() => sessionStorage.getItem("parley.workspace.token")), null);
  await p.close();
});
