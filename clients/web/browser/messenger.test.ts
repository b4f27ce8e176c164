// The messenger in a real Chromium against a real parleyd: a guest's whole
// chat (bot answer, hand-off, an agent driven through the TypeScript client
// in node, messages, typing, read receipts, attachments both ways, reload,
// a network drop, close and transcript), leaving a message when nobody
// comes, a keyboard-only form, and hostile text that must stay inert.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import type { Browser, BrowserContext, Page } from "playwright-core";

import { durationFromMs } from "@bufbuild/protobuf/wkt";
import {
  createParleyClient,
  followConversation,
  Presence,
  type Event,
  type Offer,
  type ParleyClient,
  type SubscribeResponse,
} from "../src/index.js";
import { startEnv, type Env } from "./messenger-env.js";

let env: Env;
let browser: Browser;

before(async () => {
  env = await startEnv();
  browser = env.browser;
});
after(async () => {
  await env?.stop();
});

/** The messenger page of the env's site, opened as a top-level page. */
function messengerUrl(): string {
  return `${env.base}/messenger/?site=${env.siteId}&parent=${encodeURIComponent(env.base)}`;
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
    this.client = createParleyClient(env.base, { token });
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
async function startAsGuest(page: Page, name: string, issue: string, question: string): Promise<void> {
  await page.goto(messengerUrl());
  await page.getByLabel("Your name").fill(name);
  await page.getByLabel("Email").fill("guest@example.com");
  await page.getByLabel("What is it about?").selectOption(issue);
  await page.getByLabel("Your question").fill(question);
  await page.getByRole("button", { name: "Start chat" }).click();
  await page.locator(".chat").waitFor();
}

/** The texts of the log's messages, in order, with their seqs. */
async function logMessages(page: Page): Promise<{ seq: string; text: string }[]> {
  return page.$$eval(".log .msg:not(.pending)", (els) =>
    els.map((e) => ({ seq: e.getAttribute("data-seq") ?? "", text: e.querySelector(".text")?.textContent ?? "" })),
  );
}

async function send(page: Page, text: string): Promise<void> {
  await page.locator("#compose").fill(text);
  await page.locator("#compose").press("Enter");
}

async function conversationIdOf(page: Page): Promise<string> {
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
    const context: BrowserContext = await browser.newContext({ acceptDownloads: true });
    const page = await context.newPage();
    const beth = new Agent("ps_demo_agent_beth");
    try {
      await startAsGuest(page, "Ada Guest", "billing", "How long does delivery take?");

      // The bot answers from the knowledge base, naming the article, and
      // offers replies to pick.
      await page.locator(".msg.bot .articles li", { hasText: "Delivery times" }).first().waitFor();
      await page.getByRole("group", { name: "Suggested replies" }).getByRole("button").first().waitFor();
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
      const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: /Download label\.png/ }).click()]);
      assert.equal(download.suggestedFilename(), "label.png");
      assert.deepEqual(readFileSync((await download.path())!), png);

      // A reload resumes the chat: the same history, nothing doubled.
      const before = await logMessages(page);
      await page.reload();
      await page.locator(".msg.agent .text", { hasText: "return label" }).waitFor();
      await page.waitForFunction((n) => document.querySelectorAll(".log .msg").length >= n, before.length);
      assert.deepEqual(await logMessages(page), before);

      // A network drop: the agent writes meanwhile; after it, each of those
      // messages is shown exactly once, and the guest can write again.
      await env.dropNetwork(page);
      await page.locator(".connection", { hasText: "Reconnecting" }).waitFor();
      await agentSends(beth, conversationId, "Sent during the drop, one.");
      await agentSends(beth, conversationId, "Sent during the drop, two.");
      await page.waitForTimeout(1000);
      assert.equal(await page.locator(".msg .text", { hasText: "during the drop" }).count(), 0, "the page is really cut off");
      await env.restoreNetwork(page);
      await page.locator(".msg.agent .text", { hasText: "during the drop, two" }).waitFor();
      await page.waitForFunction(() => !document.querySelector(".connection.visible"));
      const afterDrop = await logMessages(page);
      assert.equal(afterDrop.filter((m) => m.text === "Sent during the drop, one.").length, 1);
      assert.equal(afterDrop.filter((m) => m.text === "Sent during the drop, two.").length, 1);
      assert.equal(new Set(afterDrop.map((m) => m.seq)).size, afterDrop.length, "no seq shown twice");
      await send(page, "Back online.");
      await beth.waitFor((r) => r.item.case === "event" && r.item.value.kind.case === "messagePosted" && r.item.value.kind.value.text === "Back online.", "the message after the drop");

      // The agent closes the chat: the log stays, read-only, with its transcript.
      await beth.client.session.closeConversation({ conversationId, reason: "resolved" });
      await page.locator(".ended", { hasText: "This chat has ended." }).waitFor();
      assert.equal(await page.locator(".composer").isHidden(), true);
      const [transcript] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download transcript" }).click()]);
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
      await context.close();
    }
  });

  it("offers to leave a message when nobody is available, and it becomes a case", async () => {
    const admin = createParleyClient(env.base, { token: "ps_demo_admin_token" });
    const queues = (await admin.routing.listQueues({})).queues;
    const product = queues.find((q) => q.displayName === "Product Support")!;
    const policy = product.policy!;
    policy.maxWait = durationFromMs(1000);
    await admin.routing.updateQueue({ queueId: product.id, displayName: product.displayName, offerTimeout: product.offerTimeout, policy });
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await startAsGuest(page, "Lee Waiting", "product", "");
      await send(page, "agent");
      await page.locator(".status-line", { hasText: "Nobody is available" }).waitFor({ timeout: 20_000 });
      await page.getByRole("button", { name: "Leave a message", exact: true }).click();
      const box = page.getByLabel("Your message");
      assert.equal(await page.evaluate(() => document.activeElement?.id), "leave-text");
      await page.getByRole("button", { name: "Send message" }).click();
      assert.equal(await box.getAttribute("aria-invalid"), "true");
      await box.fill("Please call me back about my blender.");
      await page.getByRole("button", { name: "Send message" }).click();
      await page.locator(".ended", { hasText: /saved as case CS\d+/ }).waitFor();
      await page.locator(".status-line", { hasText: /Case CS\d+ was opened/ }).waitFor();
    } finally {
      await context.close();
    }
  });

  it("works by keyboard alone, with visible focus and errors tied to their fields", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await page.goto(messengerUrl());
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
    } finally {
      await context.close();
    }
  });

  it("shows the server's refusal on the form: the guest session limit message", async () => {
    const admin = createParleyClient(env.base, { token: "ps_demo_admin_token" });
    const settings = (await admin.session.getSettings({})).settings!;
    const message = "Too many chats <b>right now</b>: try again later.";
    await admin.session.updateSettings({ settings: { ...settings, maxGuestSessionsPerHour: 1, guestSessionsRateLimitReachedMessage: message } });
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await page.goto(messengerUrl());
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
      await context.close();
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
    const admin = createParleyClient(env.base, { token: "ps_demo_admin_token" });
    const queues = (await admin.routing.listQueues({})).queues;
    const order = queues.find((q) => q.displayName === "Order Support")!;
    const hostileName = `<img src=x onerror="window.__pwned=1">Eve`;
    const created = await admin.routing.createAgent({ displayName: hostileName, capacity: 5, queueIds: [order.id] });
    const token = await admin.access.issueToken({ role: 1, agentId: created.agent!.id, label: "hostile agent" });
    const eve = new Agent(token.token);
    const context = await browser.newContext();
    const page = await context.newPage();
    let dialogs = 0;
    page.on("dialog", (d) => {
      dialogs++;
      void d.dismiss();
    });
    try {
      await page.goto(messengerUrl());
      await page.evaluate(() => ((window as unknown as { __pwned: number }).__pwned = 0));
      await page.getByLabel("Your name").fill(payloads[1]);
      await page.getByLabel("Email").fill("eve@example.com");
      await page.getByLabel("What is it about?").selectOption("order");
      await page.getByLabel("Your question").fill(payloads[0]);
      await page.getByRole("button", { name: "Start chat" }).click();
      await page.locator(".msg.mine .text").first().waitFor();
      const conversationId = await conversationIdOf(page);
      await eve.online();
      await send(page, "agent");
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
      assert.equal(await page.locator(".chat").isVisible(), true, "no hostile CSS hid the chat");
      assert.equal(await page.title(), "Chat with us");
    } finally {
      eve.stop();
      await eve.client.routing.setPresence({ presence: Presence.OFFLINE }).catch(() => undefined);
      await context.close();
    }
  });
});
