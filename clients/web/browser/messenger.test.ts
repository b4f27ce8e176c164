// The messenger in a real Chromium against a real parleyd: a guest's whole
// chat (bot answer, hand-off, an agent driven through the TypeScript client
// in node, messages, typing, read receipts, attachments both ways, reload,
// a network drop, close and transcript), leaving a message when nobody
// comes, a keyboard-only form, and hostile text that must stay inert.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import type { Frame, Page } from "playwright-core";

import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { followConversation, Presence, retryDelayMs, type Event, type Offer, type ParleyClient, type SubscribeResponse } from "../src/index.js";
import { DEMO, demoCustomerToken, launcher, shopPage, startStack, waitFor, type Stack } from "./harness.js";

let stack: Stack;
let wire: Wire;

before(async () => {
  // The hostile-text test sends more than the default burst of messages.
  stack = await startStack({ flags: ["-send-rate", "50", "-send-burst", "200"] });
  wire = await startWire(new URL(stack.parleyd.url));
  stack.host.page("/wired", shopPage("Host shop", `<script async src="${wire.origin}/messenger.js" data-site-id="${stack.host.siteId}"></script>`));
});
after(async () => {
  await wire?.close();
  await stack?.close();
});

/**
 * Wire is a TCP relay to parleyd (byte for byte: the browser sees just
 * another origin serving Parley) whose connections a test can cut, as a
 * network drop does to a browser's open streams.
 */
interface Wire {
  origin: string;
  cut(): void;
  close(): Promise<void>;
}

async function startWire(target: URL): Promise<Wire> {
  const open = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    const outbound = connect(Number(target.port), target.hostname);
    for (const s of [inbound, outbound]) {
      open.add(s);
      s.on("close", () => open.delete(s));
      s.on("error", () => undefined);
    }
    inbound.pipe(outbound).pipe(inbound);
    inbound.on("close", () => outbound.destroy());
    outbound.on("close", () => inbound.destroy());
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const cut = () => {
    for (const s of open) s.destroy();
  };
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    cut,
    close: () => {
      cut();
      return new Promise<void>((done) => server.close(() => done()));
    },
  };
}

/** The messenger page of the host site, opened as a top-level page on Parley's origin. */
function messengerUrl(): string {
  return `${stack.parleyd.url}/messenger/?site=${stack.host.siteId}&parent=${encodeURIComponent(stack.host.origin)}`;
}

/** Opens a top-level messenger page in a fresh context; returns its frame. */
async function openDirect(): Promise<{ page: Page; frame: Frame }> {
  const page = await stack.newPage();
  await page.goto(messengerUrl());
  return { page, frame: page.mainFrame() };
}

/** Opens the messenger on the host site's page through the loader's launcher; returns the iframe. */
async function openEmbedded(page: Page, load = true, path = "/"): Promise<Frame> {
  if (load) await page.goto(stack.host.url(path));
  await launcher(page).click();
  const frame = await waitFor(() => page.frames().find((f) => f.url().includes("/messenger/")), { message: "the messenger iframe" });
  await frame.locator("main").waitFor();
  return frame;
}

/** An agent driven through the client API: their work stream, offers, and one conversation's stream. */
class Agent {
  readonly client: ParleyClient;
  private readonly abort = new AbortController();
  private readonly offers: Offer[] = [];
  private offerWaiters: ((o: Offer) => void)[] = [];
  readonly items: SubscribeResponse[] = [];
  private itemWaiters: (() => void)[] = [];

  constructor(token: string) {
    this.client = stack.client(token);
  }

  async online(): Promise<void> {
    void (async () => {
      try {
        for await (const r of this.client.routing.watchWork({}, { signal: this.abort.signal })) {
          if (r.item.case === "offer") {
            const w = this.offerWaiters.shift();
            if (w) w(r.item.value);
            else this.offers.push(r.item.value);
          }
        }
      } catch {
        // Ends when the test is over.
      }
    })();
    await this.client.routing.setPresence({ presence: Presence.AVAILABLE });
  }

  async offline(): Promise<void> {
    await this.client.routing.setPresence({ presence: Presence.OFFLINE });
    this.abort.abort();
  }

  nextOffer(): Promise<Offer> {
    const o = this.offers.shift();
    if (o) return Promise.resolve(o);
    return new Promise((resolve) => this.offerWaiters.push(resolve));
  }

  /** Follows the conversation as the agent, keeping every item. */
  follow(conversationId: string): void {
    void (async () => {
      try {
        for await (const r of followConversation(this.client, conversationId, 0, { signal: this.abort.signal })) {
          this.items.push(r);
          for (const w of this.itemWaiters.splice(0)) w();
        }
      } catch {
        // Ends when the test is over.
      }
    })();
  }

  /** Waits until some item satisfies pred, and returns it. */
  async waitFor<T>(pred: (r: SubscribeResponse) => T | undefined, what: string, timeoutMs = 15_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const r of this.items) {
        const v = pred(r);
        if (v !== undefined && v !== false) return v;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`agent: timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.itemWaiters.push(() => (clearTimeout(t), resolve()));
      });
    }
  }

  events(): Event[] {
    return this.items.flatMap((r) => (r.item.case === "event" ? [r.item.value] : []));
  }

  stop(): void {
    this.abort.abort();
  }
}

async function sha256(b: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(b)));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}

async function agentSends(agent: Agent, conversationId: string, text: string, attachmentIds: string[] = []): Promise<void> {
  await agent.client.messaging.sendMessage({ conversationId, clientMessageId: crypto.randomUUID(), text, attachmentIds });
}

async function agentUploads(agent: Agent, conversationId: string, filename: string, contentType: string, content: Uint8Array): Promise<string> {
  const r = await agent.client.messaging.uploadAttachment({
    conversationId,
    requestId: crypto.randomUUID(),
    filename,
    contentType,
    content,
    sha256: await sha256(content),
  });
  return r.attachment!.id;
}

/** A 1x1 PNG. */
const pixelPng = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPj/HwADAgH/eL9GtQAAAABJRU5ErkJggg==";

/** Fills and sends the guest pre-chat form. */
async function startAsGuest(page: Frame, name: string, issue: string, question: string): Promise<void> {
  await page.getByLabel("Your name").fill(name);
  await page.getByLabel("Email").fill("guest@example.com");
  await page.getByLabel("What is it about?").selectOption(issue);
  await page.getByLabel("Your question").fill(question);
  await page.getByRole("button", { name: "Start chat" }).click();
  await page.locator(".chat").waitFor();
}

/** The texts of the log's messages, in order, with their seqs. */
async function logMessages(page: Frame): Promise<{ seq: string; text: string }[]> {
  return page.$$eval(".log .msg:not(.pending)", (els) =>
    els.map((e) => ({ seq: e.getAttribute("data-seq") ?? "", text: e.querySelector(".text")?.textContent ?? "" })),
  );
}

async function send(page: Frame, text: string): Promise<void> {
  await page.locator("#compose").fill(text);
  await page.locator("#compose").press("Enter");
}

async function conversationIdOf(page: Frame): Promise<string> {
  const id = await page.evaluate(() => {
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i)!;
      if (k.startsWith("parley:messenger:")) return JSON.parse(localStorage.getItem(k)!).conversationId as string;
    }
    return "";
  });
  assert.ok(id, "the chat is saved for resuming");
  return id;
}

describe("messenger", () => {
  it("runs a guest's whole chat: bot answer, hand-off, agent, typing, receipts, attachments, reload, drop, close", async () => {
    const tab = await stack.newPage();
    const posted: unknown[] = [];
    await tab.exposeFunction("recordParleyMessage", (d: unknown) => void posted.push(d));
    await tab.addInitScript(() =>
      window.addEventListener("message", (e) => (window as unknown as { recordParleyMessage(d: unknown): void }).recordParleyMessage(e.data)),
    );
    // The host page loads Parley through the wire, so the test can cut it.
    let page = await openEmbedded(tab, true, "/wired");
    const beth = new Agent(DEMO.agents.beth);
    try {
      // The iframe said it was ready, and the panel's first control has the focus.
      assert.ok(posted.some((d) => (d as { type: string }).type === "parley:ready"));
      await waitFor(() => page.evaluate(() => document.activeElement?.id === "f-name"), { message: "focus on the name field" });
      await startAsGuest(page, "Ada Guest", "billing", "How long does delivery take?");

      // The bot answers from the knowledge base, naming the article, and
      // offers replies to pick.
      await page.locator(".msg.bot .articles li", { hasText: "Delivery times" }).first().waitFor();
      const replies = page.getByRole("group", { name: "Suggested replies" });
      await replies.getByRole("button").first().waitFor();
      // Picking a suggested reply sends its text; the choices go away.
      const choice = (await replies.getByRole("button").last().textContent())!;
      await replies.getByRole("button").last().click();
      await page.locator(".msg.mine .text", { hasText: choice }).waitFor();
      await page.locator(".msg.bot").nth(3).waitFor();
      assert.equal(await page.getAttribute(".log", "role"), "log");
      assert.equal(await page.getAttribute(".log", "aria-live"), "polite");

      // Asking for a person is a message; nobody is online yet, so the
      // guest waits and sees where they stand.
      await send(page, "talk to a person");
      await page.locator(".status-line", { hasText: "Connecting you to a person" }).waitFor();
      await page.locator(".queue", { hasText: "in line" }).waitFor();
      await page.getByRole("button", { name: "Leave a message instead" }).waitFor();

      // An agent comes online, is offered the chat and accepts it.
      const conversationId = await conversationIdOf(page);
      await beth.online();
      const offer = await beth.nextOffer();
      assert.equal(offer.conversation?.id, conversationId);
      await beth.client.routing.acceptOffer({ offerId: offer.id });
      beth.follow(conversationId);
      await page.locator(".status-line", { hasText: "Beth Anglin joined the chat" }).waitFor();
      await page.locator(".chat-head", { hasText: "Chatting with Beth Anglin" }).waitFor();
      assert.equal(await page.locator(".queue").textContent(), "");

      // Messages both ways.
      await agentSends(beth, conversationId, "Hi Ada, Beth here. How can I help?");
      await page.locator(".msg.agent .text", { hasText: "Beth here" }).waitFor();
      await send(page, "My refund has not arrived yet.");
      await beth.waitFor((r) => r.item.case === "event" && r.item.value.kind.case === "messagePosted" && r.item.value.kind.value.text === "My refund has not arrived yet.", "the guest's message");

      // Typing, both ways.
      await beth.client.messaging.setTyping({ conversationId, typing: true });
      await page.locator(".typing", { hasText: "Beth Anglin is typing" }).waitFor();
      await beth.client.messaging.setTyping({ conversationId, typing: false });
      await page.waitForFunction(() => document.querySelector(".typing")?.textContent === "");
      await page.locator("#compose").pressSequentially("Is it", { delay: 20 });
      await beth.waitFor((r) => r.item.case === "typing" && r.item.value.typing, "the guest typing");
      await page.locator("#compose").fill("");

      // Read receipts: the guest's page read the agent's message; the
      // agent reads the guest's and the page shows "Read" under it.
      const agentMsg = beth.events().find((e) => e.kind.case === "messagePosted" && e.kind.value.text.includes("Beth here"))!;
      await beth.waitFor((r) => r.item.case === "readCursor" && r.item.value.readSeq >= agentMsg.seq, "the guest's read cursor");
      const guestMsg = beth.events().find((e) => e.kind.case === "messagePosted" && e.kind.value.text === "My refund has not arrived yet.")!;
      await beth.client.messaging.markRead({ conversationId, requestId: crypto.randomUUID(), readSeq: guestMsg.seq });
      await page.locator(`.msg.mine[data-seq="${guestMsg.seq}"] .read-mark`, { hasText: "Read" }).waitFor();

      // With the panel closed, the agent's next message is unread: the
      // launcher counts it; opening the panel reads it.
      await page.getByRole("button", { name: "Close the chat panel" }).click();
      await waitFor(async () => (await launcher(tab).getAttribute("aria-expanded")) === "false", { message: "the panel closed" });
      await agentSends(beth, conversationId, "Are you still there?");
      await waitFor(async () => /1 unread/.test((await launcher(tab).getAttribute("aria-label")) ?? ""), { message: "the unread count on the launcher" });
      const later = await beth.waitFor((r) => (r.item.case === "event" && r.item.value.kind.case === "messagePosted" && r.item.value.kind.value.text === "Are you still there?" ? r.item.value : undefined), "the agent's message");
      assert.ok(!beth.items.some((r) => r.item.case === "readCursor" && r.item.value.readSeq >= later.seq), "not read while the panel is closed");
      await launcher(tab).click();
      await beth.waitFor((r) => r.item.case === "readCursor" && r.item.value.readSeq >= later.seq, "read once the panel opens");
      assert.equal(await launcher(tab).getAttribute("aria-label"), "Close chat");
      assert.ok(posted.every((d) => typeof d === "object" && d !== null && !JSON.stringify(d).includes("still there")), "no message text crosses to the host page");

      // An attachment from the guest: uploaded with its SHA-256, read back by the agent.
      const note = new TextEncoder().encode("order 1042, refund requested on Monday\n");
      await page.locator("#attach").setInputFiles({ name: "receipt.txt", mimeType: "text/plain", buffer: Buffer.from(note) });
      const att = await beth.waitFor(
        (r) => (r.item.case === "event" && r.item.value.kind.case === "messagePosted" ? r.item.value.kind.value.attachments.find((a) => a.filename === "receipt.txt") : undefined),
        "the guest's attachment",
      );
      const got = await beth.client.messaging.getAttachment({ attachmentId: att.id });
      assert.deepEqual(Buffer.from(got.content), Buffer.from(note));
      assert.equal(att.sha256, await sha256(note));

      // An attachment from the agent: an image shown from a blob: URL, and a download.
      const png = Buffer.from(pixelPng, "base64");
      const imageId = await agentUploads(beth, conversationId, "label.png", "image/png", png);
      await agentSends(beth, conversationId, "Here is your return label.", [imageId]);
      const thumb = page.locator(".msg.agent img.thumb[alt='label.png']");
      await thumb.waitFor();
      assert.match((await thumb.getAttribute("src")) ?? "", /^blob:/);
      const [download] = await Promise.all([tab.waitForEvent("download"), page.getByRole("button", { name: /Download label\.png/ }).click()]);
      assert.equal(download.suggestedFilename(), "label.png");
      assert.deepEqual(readFileSync((await download.path())!), png);

      // A reload resumes the chat: the same history, nothing doubled.
      const before = await logMessages(page);
      await tab.reload();
      page = await openEmbedded(tab, false);
      await page.locator(".msg.agent .text", { hasText: "return label" }).waitFor();
      await page.waitForFunction((n) => document.querySelectorAll(".log .msg").length >= n, before.length);
      assert.deepEqual(await logMessages(page), before);

      // A network drop: the agent writes meanwhile; after it, each of those
      // messages is shown exactly once, and the guest can write again.
      await tab.context().setOffline(true);
      wire.cut();
      await page.locator(".connection", { hasText: "Reconnecting" }).waitFor();
      // A send while offline is retried by itself: "Sending…", never "Not sent".
      await send(page, "Typed while offline.");
      await page.locator(".msg.pending .state", { hasText: "Sending…" }).waitFor();
      await agentSends(beth, conversationId, "Sent during the drop, one.");
      await agentSends(beth, conversationId, "Sent during the drop, two.");
      await tab.waitForTimeout(1000);
      assert.equal(await page.locator(".msg .text", { hasText: "during the drop" }).count(), 0, "the page is really cut off");
      assert.equal(await page.locator(".msg.pending .state", { hasText: "Not sent" }).count(), 0, "a retryable failure is not shown as not sent");
      assert.equal(await page.getByRole("button", { name: "Retry" }).count(), 0);
      await tab.context().setOffline(false);
      await page.locator(".msg.agent .text", { hasText: "during the drop, two" }).waitFor();
      await page.waitForFunction(() => !document.querySelector(".connection.visible"));
      await beth.waitFor((r) => r.item.case === "event" && r.item.value.kind.case === "messagePosted" && r.item.value.kind.value.text === "Typed while offline.", "the retried message");
      await page.waitForFunction(() => !document.querySelector(".msg.pending"));
      const afterDrop = await logMessages(page);
      assert.equal(afterDrop.filter((m) => m.text === "Sent during the drop, one.").length, 1);
      assert.equal(afterDrop.filter((m) => m.text === "Sent during the drop, two.").length, 1);
      assert.equal(afterDrop.filter((m) => m.text === "Typed while offline.").length, 1);
      assert.equal(beth.events().filter((e) => e.kind.case === "messagePosted" && e.kind.value.text === "Typed while offline.").length, 1);
      assert.equal(new Set(afterDrop.map((m) => m.seq)).size, afterDrop.length, "no seq shown twice");
      await send(page, "Back online.");
      await beth.waitFor((r) => r.item.case === "event" && r.item.value.kind.case === "messagePosted" && r.item.value.kind.value.text === "Back online.", "the message after the drop");

      // The agent closes the chat: the log stays, read-only, with its transcript.
      await beth.client.session.closeConversation({ conversationId, reason: "resolved" });
      await page.locator(".ended", { hasText: "This chat has ended." }).waitFor();
      assert.equal(await page.locator(".composer").isHidden(), true);
      const [transcript] = await Promise.all([tab.waitForEvent("download"), page.getByRole("button", { name: "Download transcript" }).click()]);
      const text = readFileSync((await transcript.path())!, "utf8");
      assert.match(text, /Beth Anglin: Hi Ada, Beth here\. How can I help\?/);
      assert.match(text, /: My refund has not arrived yet\./);
      assert.match(text, /\[attachment\] label\.png/);
      assert.equal(text.split("Sent during the drop, one.").length, 2, "once in the transcript");
      assert.equal(await page.evaluate(() => localStorage.length), 0, "a closed chat is not resumed");

      // A new chat starts from the form.
      await page.getByRole("button", { name: "Start a new chat" }).click();
      await page.getByLabel("Your name").waitFor();
    } finally {
      beth.stop();
      await beth.client.routing.setPresence({ presence: Presence.OFFLINE }).catch(() => undefined);
      await tab.context().close();
    }
  });

  it("identifies a signed-in customer by the host page's JWT, asked for on every call", async () => {
    const tab = await stack.newPage();
    let asked = 0;
    await tab.exposeFunction("portalToken", () => (asked++, demoCustomerToken("cust-42", { name: "Carol Customer", email: "carol@example.com", ttlSeconds: 120 })));
    try {
      await tab.goto(stack.host.url("/"));
      await tab.waitForFunction(() => "Parley" in window);
      await tab.evaluate(() => {
        const w = window as unknown as { Parley: { identify(f: () => Promise<string>): void }; portalToken(): Promise<string> };
        w.Parley.identify(() => w.portalToken());
      });
      let page = await openEmbedded(tab, false);
      // No name or email to give: they come from the verified identity.
      await page.getByLabel("What is it about?").waitFor();
      assert.equal(await page.getByLabel("Your name").count(), 0);
      await page.getByLabel("What is it about?").selectOption("order");
      await page.getByLabel("Your question").fill("Where is order 1042?");
      await page.getByRole("button", { name: "Start chat" }).click();
      await page.locator(".msg.mine .who", { hasText: "Carol Customer" }).first().waitFor();
      await page.locator(".msg.bot").first().waitFor();
      const before = asked;
      assert.ok(before >= 2, `the token is asked for per call (${before})`);

      // A reload finds the customer's open chat through ListMyConversations.
      const shown = await logMessages(page);
      await tab.reload();
      await tab.waitForFunction(() => "Parley" in window);
      await tab.evaluate(() => {
        const w = window as unknown as { Parley: { identify(f: () => Promise<string>): void }; portalToken(): Promise<string> };
        w.Parley.identify(() => w.portalToken());
      });
      page = await openEmbedded(tab, false);
      await page.locator(".msg.mine .text", { hasText: "Where is order 1042?" }).waitFor();
      await page.waitForFunction((n) => document.querySelectorAll(".log .msg").length >= n, shown.length);
      assert.deepEqual((await logMessages(page)).slice(0, shown.length), shown);
      assert.ok(asked > before);

      // Signing out on the host page hides the customer's chat.
      await tab.evaluate(() => (window as unknown as { Parley: { logout(): void } }).Parley.logout());
      await page.getByLabel("Your name").waitFor();
    } finally {
      await tab.context().close();
    }
  });

  it("shows who the visitor chats as, and identify() during a guest chat does not move it into an account", async () => {
    const tab = await stack.newPage();
    let asked = 0;
    await tab.exposeFunction("portalToken", () => (asked++, demoCustomerToken("cust-77", { name: "Mallory Other", email: "mallory@example.com", ttlSeconds: 120 })));
    try {
      const page = await openEmbedded(tab);
      await startAsGuest(page, "Gina Guest", "billing", "A guest question, a7c3.");
      await page.locator(".msg.bot").first().waitFor();
      await page.locator(".chat-identity", { hasText: "Chatting as Gina Guest (guest)" }).waitFor();
      const conversationId = await conversationIdOf(page);
      const stored = await page.evaluate(() => Object.values(localStorage).join("\n"));
      const guestToken = /"guestToken":"([^"]+)"/.exec(stored)?.[1];
      assert.ok(guestToken);

      // A script on the host page names an account while the guest chat is open.
      await tab.evaluate(() => {
        const w = window as unknown as { Parley: { identify(f: () => Promise<string>): void }; portalToken(): Promise<string> };
        w.Parley.identify(() => w.portalToken());
      });
      await tab.waitForTimeout(1500);
      await send(page, "Still a guest, b81e.");
      await page.locator(".msg.mine:not(.pending) .text", { hasText: "Still a guest, b81e." }).waitFor();
      // The chat was not claimed: that account has no conversation, the
      // guest token still reads it, and the header still says guest.
      const other = stack.client(demoCustomerToken("cust-77", { name: "Mallory Other", email: "mallory@example.com", ttlSeconds: 120 }));
      assert.equal((await other.session.listMyConversations({})).conversations.length, 0, "the guest chat moved into the host's account");
      const conv = (await stack.client(guestToken).session.getConversation({ conversationId })).conversation!;
      assert.equal(conv.consumerId, "", "the conversation has no consumer");
      assert.equal(await page.locator(".chat-identity").textContent(), "Chatting as Gina Guest (guest)");
      assert.ok((await page.evaluate(() => Object.values(localStorage).join("\n"))).includes(guestToken), "the guest token is kept");

      // Once the guest chat ends, the identity applies: the next chat is the customer's.
      await page.getByRole("button", { name: "End chat" }).click();
      await page.getByRole("button", { name: "Start a new chat" }).click();
      await page.getByLabel("What is it about?").waitFor();
      assert.equal(await page.getByLabel("Your name").count(), 0, "the short form of a signed-in customer");
      await page.getByLabel("What is it about?").selectOption("order");
      await page.getByLabel("Your question").fill("Now signed in, c44d.");
      await page.getByRole("button", { name: "Start chat" }).click();
      await page.locator(".chat-identity", { hasText: "Signed in as Mallory Other" }).waitFor();
      const mine = (await other.session.listMyConversations({})).conversations;
      assert.equal(mine.length, 1);
      assert.notEqual(mine[0]!.id, conversationId);
    } finally {
      await tab.context().close();
    }
  });

  it("opens a resumed chat at its newest message and follows new ones, unless the reader scrolled up", async () => {
    const tab = await stack.newPage();
    try {
      let page = await openEmbedded(tab);
      await startAsGuest(page, "Lena Long", "billing", "A long chat, part 0.");
      await page.locator(".msg.bot").first().waitFor();
      const conversationId = await conversationIdOf(page);
      const stored = await page.evaluate(() => Object.values(localStorage).join("\n"));
      const guest = stack.client(/"guestToken":"([^"]+)"/.exec(stored)![1]!);
      const say = async (text: string) => {
        const clientMessageId = crypto.randomUUID();
        for (;;) {
          try {
            await guest.messaging.sendMessage({ conversationId, clientMessageId, text });
            return;
          } catch (err) {
            const wait = retryDelayMs(err);
            if (wait === undefined) throw err;
            await new Promise((r) => setTimeout(r, wait));
          }
        }
      };
      for (let i = 1; i <= 30; i++) await say(`Part ${i} of a long chat.\nA second line.\nA third line.`);
      await page.locator(".msg .text", { hasText: "Part 30 of" }).waitFor();

      const atBottom = () => {
        const l = document.querySelector(".log")!;
        return l.scrollHeight > l.clientHeight + 300 && l.scrollTop + l.clientHeight >= l.scrollHeight - 8;
      };
      await tab.reload();
      page = await openEmbedded(tab, false);
      await page.locator(".msg .text", { hasText: "Part 30 of" }).waitFor();
      await page.waitForFunction(atBottom, undefined, { timeout: 10_000 });

      // A new message while the reader is at the bottom: followed.
      await say("Newest, d1.");
      await page.locator(".msg .text", { hasText: "Newest, d1." }).waitFor();
      await page.waitForFunction(atBottom, undefined, { timeout: 10_000 });

      // The reader scrolled up: a new message does not move the view, a button offers it.
      await page.evaluate(() => (document.querySelector(".log")!.scrollTop = 0));
      await tab.waitForTimeout(300);
      await say("Newest, d2.");
      await page.locator(".msg .text", { hasText: "Newest, d2." }).waitFor();
      await page.getByRole("button", { name: /New messages/ }).waitFor();
      assert.ok((await page.evaluate(() => document.querySelector(".log")!.scrollTop)) < 50, "the view was not yanked down");
      await page.getByRole("button", { name: /New messages/ }).click();
      await page.waitForFunction(atBottom, undefined, { timeout: 10_000 });
    } finally {
      await tab.context().close();
    }
  });

  it("after a reload, says so when the chat was closed meanwhile, and starts afresh", async () => {
    const { page } = await openDirect();
    try {
      await startAsGuest(page.mainFrame(), "Rita Return", "billing", "");
      await page.locator(".msg.bot").first().waitFor();
      const conversationId = await conversationIdOf(page.mainFrame());
      await page.goto("about:blank");
      await stack.client(DEMO.admin).session.closeConversation({ conversationId, reason: "closed while the guest was away" });
      await page.goto(messengerUrl());
      await page.locator(".ended", { hasText: "This chat is no longer available." }).waitFor();
      assert.equal(await page.evaluate(() => localStorage.length), 0);
      await page.getByRole("button", { name: "Start a new chat" }).click();
      await page.getByLabel("Your name").waitFor();
    } finally {
      await page.context().close();
    }
  });

  it("offers to leave a message when nobody is available, and it becomes a case", async () => {
    const admin = stack.client(DEMO.admin);
    const queues = (await admin.routing.listQueues({})).queues;
    const product = queues.find((q) => q.displayName === "Product Support")!;
    const policy = product.policy!;
    policy.maxWait = durationFromMs(1000);
    await admin.routing.updateQueue({ queueId: product.id, displayName: product.displayName, offerTimeout: product.offerTimeout, policy });
    const { page } = await openDirect();
    try {
      await startAsGuest(page.mainFrame(), "Lee Waiting", "product", "");
      await send(page.mainFrame(), "agent");
      await page.locator(".status-line", { hasText: "Nobody is available" }).waitFor({ timeout: 20_000 });
      await page.getByRole("button", { name: "Leave a message", exact: true }).click();
      const box = page.getByLabel("Your message");
      assert.equal(await page.evaluate(() => document.activeElement?.id), "leave-text");
      await page.getByRole("button", { name: "Send message" }).click();
      assert.equal(await box.getAttribute("aria-invalid"), "true");
      await box.fill("Please call me back about my blender.");
      await page.getByRole("button", { name: "Send message" }).click();
      await page.locator(".ended", { hasText: /saved as case CS\d+/ }).waitFor();
      assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Download transcript", "the focus stays in the panel");
      await page.locator(".status-line", { hasText: /Case CS\d+ was opened/ }).waitFor();
    } finally {
      await page.context().close();
    }
  });

  it("works by keyboard alone, with visible focus and errors tied to their fields", async () => {
    const { page } = await openDirect();
    try {
      await page.getByLabel("Your name").waitFor();
      const focused = () =>
        page.evaluate(() => {
          const a = document.activeElement as HTMLElement;
          const s = getComputedStyle(a);
          return { id: a.id, tag: a.tagName, visible: a.matches(":focus-visible") && s.outlineStyle !== "none" && s.outlineWidth !== "0px" };
        });
      // Sending the empty form by keyboard: errors, and focus on the first field at fault.
      await page.keyboard.press("Tab");
      let f = await focused();
      assert.equal(f.id, "f-name");
      assert.ok(f.visible, "focus is visible on the name field");
      for (let i = 0; i < 10 && (await focused()).tag !== "BUTTON"; i++) await page.keyboard.press("Tab");
      assert.match((await page.evaluate(() => document.activeElement?.textContent)) ?? "", /Start chat/);
      assert.ok((await focused()).visible, "focus is visible on the button");
      await page.keyboard.press("Enter");
      f = await focused();
      assert.equal(f.id, "f-name");
      assert.equal(await page.getAttribute("#f-name", "aria-invalid"), "true");
      assert.equal(await page.textContent("#f-name-error"), "Enter your name.");
      assert.equal(await page.getAttribute("#f-name", "aria-describedby"), "f-name-error");

      // Filling it in by keyboard.
      await page.keyboard.type("Kay Board");
      await page.keyboard.press("Tab");
      await page.keyboard.type("not-an-email");
      await page.keyboard.press("Tab");
      await page.keyboard.type("Ord"); // the select's type-ahead picks "Order"
      await page.keyboard.press("Tab");
      await page.keyboard.type("1042"); // the demo's optional order number
      await page.keyboard.press("Tab"); // its optional follow-up choice, left as is
      await page.keyboard.press("Tab");
      await page.keyboard.type("Where is my order?");
      await page.keyboard.press("Tab");
      await page.keyboard.press("Enter");
      f = await focused();
      assert.equal(f.id, "f-email");
      assert.match((await page.textContent("#f-email-error")) ?? "", /valid email/);
      await page.keyboard.press("Control+A");
      await page.keyboard.type("kay@example.com");
      await page.keyboard.press("Enter");
      await page.locator(".chat").waitFor();
      await page.locator(".msg.bot").first().waitFor();
      assert.equal(await page.evaluate(() => document.activeElement?.id), "compose");
      await page.keyboard.type("thanks");
      await page.keyboard.press("Enter");
      await page.locator(".msg.mine .text", { hasText: "thanks" }).waitFor();

      // Ending the chat and starting another, by keyboard.
      await page.getByRole("button", { name: "End chat" }).focus();
      await page.keyboard.press("Enter");
      await page.locator(".ended", { hasText: "This chat has ended." }).waitFor();
      await waitFor(() => page.evaluate(() => document.activeElement?.textContent === "Download transcript"), { message: "focus on the transcript button" });
      assert.ok((await focused()).visible);
      await page.keyboard.press("Tab");
      await page.keyboard.press("Enter");
      await page.getByLabel("Your name").waitFor();
      assert.equal((await focused()).id, "f-name");
    } finally {
      await page.context().close();
    }
  });

  it("shows the settings' extra pre-chat fields, their server errors inline, and sends their values, which the agent reads", async () => {
    const admin = stack.client(DEMO.admin);
    const settings = (await admin.session.getSettings({})).settings!;
    const { page } = await openDirect();
    try {
      const order = page.getByLabel("Order number");
      await order.waitFor();
      assert.equal(await order.getAttribute("maxlength"), "40");
      assert.equal(await order.getAttribute("aria-describedby"), "f-form-order_number-hint f-form-order_number-error");
      assert.equal(await page.textContent("#f-form-order_number-hint"), "If your question is about an order");
      const follow = page.getByLabel("How should we follow up?");
      assert.deepEqual(await follow.locator("option").allTextContents(), ["—", "Chat only", "Email me a copy"]);
      await order.fill("  A-1042 ");
      await follow.selectOption("Email me a copy");
      // The admin shortens the field after the form loaded: the server's
      // refusal appears on the field, in words, with its label.
      const shorter = settings.preChatFields.map((f) => (f.name === "order_number" ? { ...f, maxLength: 4 } : f));
      await admin.session.updateSettings({ settings: { ...settings, preChatFields: shorter } });
      await page.getByLabel("Your name").fill("Fay Fields");
      await page.getByLabel("Email").fill("fay@example.com");
      await page.getByLabel("What is it about?").selectOption("order");
      await page.getByRole("button", { name: "Start chat" }).click();
      await waitFor(async () => (await page.textContent("#f-form-order_number-error")) !== "", { message: "the order number's error" });
      assert.equal(await page.textContent("#f-form-order_number-error"), "Order number must be at most 4 characters, not 6");
      assert.equal(await order.getAttribute("aria-invalid"), "true");
      assert.equal(await page.evaluate(() => document.activeElement?.id), "f-form-order_number");
      await admin.session.updateSettings({ settings });
      await startAsGuest(page.mainFrame(), "Fay Fields", "order", "Where is it?");
      const conversationId = await conversationIdOf(page.mainFrame());
      const conv = (await stack.client(DEMO.admin).session.getConversation({ conversationId })).conversation!;
      assert.deepEqual({ ...conv.interaction!.formFields }, { order_number: "A-1042", contact_preference: "Email me a copy" });
    } finally {
      await admin.session.updateSettings({ settings });
      await page.context().close();
    }
  });

  it("shows the server's refusal on the form: the guest session limit message", async () => {
    const admin = stack.client(DEMO.admin);
    const settings = (await admin.session.getSettings({})).settings!;
    const message = "Too many chats <b>right now</b>: try again later.";
    await admin.session.updateSettings({ settings: { ...settings, maxGuestSessionsPerHour: 1, guestSessionsRateLimitReachedMessage: message } });
    // Whatever ran before, the hour's one guest session is taken now.
    await stack
      .client()
      .session.startGuestChat({ requestId: crypto.randomUUID(), name: "First", email: "first@example.com", issueType: "order" })
      .catch(() => undefined);
    const { page } = await openDirect();
    try {
      await page.getByLabel("Your name").fill("Max Limit");
      await page.getByLabel("Email").fill("max@example.com");
      await page.getByLabel("What is it about?").selectOption("order");
      await page.getByRole("button", { name: "Start chat" }).click();
      const alert = page.getByRole("alert").filter({ hasText: "Too many chats" });
      await alert.waitFor();
      assert.equal(await alert.textContent(), message, "the admin's text, shown as text");
      assert.equal(await page.locator(".form-alert b").count(), 0);
    } finally {
      await admin.session.updateSettings({ settings });
      await page.context().close();
    }
  });
});

/** Hostile strings: each must appear literally and do nothing. */
const payloads = [
  `<script>window.__pwned=1</script>`,
  `<img src=x onerror="window.__pwned=1">`,
  `<svg onload="window.__pwned=1"></svg>`,
  `<svg><script>window.__pwned=1</script></svg>`,
  `javascript:window.__pwned=1`,
  `<a href="javascript:window.__pwned=1">click</a>`,
  `"><img src=x onerror=window.__pwned=1>`,
  `'><script>window.__pwned=1</script>`,
  `" autofocus onfocus="window.__pwned=1`,
  `</textarea><script>window.__pwned=1</script>`,
  `</title><script>window.__pwned=1</script>`,
  `<iframe src="javascript:window.__pwned=1"></iframe>`,
  `<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>`,
  `<body onload=window.__pwned=1>`,
  `<details open ontoggle=window.__pwned=1>`,
  `<math><mtext><table><mglyph><style><img src=x onerror=window.__pwned=1>`,
  `<object data="javascript:window.__pwned=1"></object>`,
  `<embed src="javascript:window.__pwned=1">`,
  `<style>*{display:none}</style>`,
  `<link rel=stylesheet href=https://evil.example/x.css>`,
  `<meta http-equiv="refresh" content="0;url=javascript:window.__pwned=1">`,
  "${window.__pwned=1}",
  "`${alert(1)}`",
  `{{constructor.constructor('window.__pwned=1')()}}`,
  `\u003cimg src=x onerror=window.__pwned=1\u003e`,
  `&lt;img src=x onerror=window.__pwned=1&gt;`,
  `<img src=x onerror=\u0061lert(1)>`,
  `\u202e<b>reversed</b>`,
  `<a href=" jav&#x09;ascript:window.__pwned=1">x</a>`,
  `data:text/html,<script>window.__pwned=1</script>`,
  `https://example.com/"><script>window.__pwned=1</script>`,
];

/** Hostile filenames (no "/" or "\\": the server refuses those). */
const filenames = [`<img src=x onerror=window.__pwned=1>.txt`, `"><svg onload=window.__pwned=1>.png`, `javascript:window.__pwned=1.pdf`, `<script>alert(1)<\\script>.txt`.replace("\\", "_")];

describe("messenger with hostile text", () => {
  it("renders agent messages, names and attachment filenames as inert text", async () => {
    assert.ok(payloads.length >= 25);
    const admin = stack.client(DEMO.admin);
    const queues = (await admin.routing.listQueues({})).queues;
    const order = queues.find((q) => q.displayName === "Order Support")!;
    const hostileName = `<img src=x onerror="window.__pwned=1">Eve`;
    const created = await admin.routing.createAgent({ displayName: hostileName, capacity: 5, queueIds: [order.id] });
    const token = await admin.access.issueToken({ role: 1, agentId: created.agent!.id, label: "hostile agent" });
    const eve = new Agent(token.token);
    const { page, frame } = await openDirect();
    let dialogs = 0;
    page.on("dialog", (d) => {
      dialogs++;
      void d.dismiss();
    });
    try {
      await page.evaluate(() => ((window as unknown as { __pwned: number }).__pwned = 0));
      await page.getByLabel("Your name").fill(payloads[1]);
      await page.getByLabel("Email").fill("eve@example.com");
      await page.getByLabel("What is it about?").selectOption("order");
      await page.getByLabel("Your question").fill(payloads[0]);
      await page.getByRole("button", { name: "Start chat" }).click();
      await page.locator(".msg.mine .text").first().waitFor();
      const conversationId = await conversationIdOf(frame);
      await eve.online();
      await send(frame, "agent");
      const offer = await eve.nextOffer();
      await eve.client.routing.acceptOffer({ offerId: offer.id });
      await page.locator(".status-line", { hasText: `${hostileName} joined the chat` }).waitFor();
      for (const p of payloads) await agentSends(eve, conversationId, p);
      const ids: string[] = [];
      for (const f of filenames) ids.push(await agentUploads(eve, conversationId, f, "text/plain", new TextEncoder().encode("hello")));
      await agentSends(eve, conversationId, "files", ids);
      await page.locator(".msg.agent .text", { hasText: "files" }).waitFor();

      const shown = await page.$$eval(".msg.agent .text", (els) => els.map((e) => e.textContent));
      for (const p of payloads) assert.ok(shown.includes(p), `shown literally: ${p}`);
      const buttons = await page.$$eval(".msg.agent .file", (els) => els.map((e) => e.textContent));
      for (const f of filenames) assert.ok(buttons.some((b) => b?.startsWith(f)), `filename shown literally: ${f}`);
      assert.ok((await page.$$eval(".msg.mine .who", (els) => els.map((e) => e.textContent))).includes(payloads[1]), "the guest's name shown literally");

      // Nothing ran and nothing was injected.
      await page.waitForTimeout(500); // let any injected onerror/onload fire
      assert.equal(dialogs, 0);
      assert.equal(await page.evaluate(() => (window as unknown as { __pwned: number }).__pwned), 0);
      const injected = await page.$$eval(".chat script, .chat iframe, .chat object, .chat embed, .chat svg, .chat style, .chat link, .chat meta, .chat details, .chat math, .chat b, .chat body, .chat img:not(.thumb)", (els) => els.length);
      assert.equal(injected, 0);
      const hrefs = await page.$$eval(".chat a", (els) => els.map((a) => a.getAttribute("href") ?? ""));
      for (const h of hrefs) assert.match(h, /^https?:\/\//, "only http(s) links");
      // The one real URL is a link, cut before the quote, opening apart from the chat.
      const link = page.locator(".chat a[href='https://example.com/']");
      assert.equal(await link.getAttribute("rel"), "noopener noreferrer nofollow");
      assert.equal(await link.getAttribute("target"), "_blank");
      assert.equal(await page.locator(".chat").isVisible(), true, "no hostile CSS hid the chat");
      assert.equal(await page.title(), "Chat with us");
    } finally {
      eve.stop();
      await eve.client.routing.setPresence({ presence: Presence.OFFLINE }).catch(() => undefined);
      await page.context().close();
    }
  });
});
