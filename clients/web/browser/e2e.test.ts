// The whole product in Chromium, end to end, against a real parleyd: a
// guest on the demo host page (the messenger embedded like on any
// third-party site) and agents in the workspace, each in a browser context
// of their own. Bot answer, hand-off, accept, messages both ways,
// attachments both ways, case, transfer to another agent, close with
// wrap-up. Once on plain HTTP/1.1 and once over TLS, where the browser
// speaks HTTP/2. PARLEY_SCREENSHOTS=1 also writes the README's screenshots
// (docs/screenshots/*.png) from the HTTP/1.1 run.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";

import type { FrameLocator, Locator, Page } from "playwright-core";

import { Channel } from "../src/index.js";
import { launcher, messengerFrame, nextMatching, startStack, waitFor } from "./harness.js";

const repoRoot = resolve(import.meta.dirname, "../../..");
const screenshots = join(repoRoot, "docs/screenshots");

/** Signs an agent in to the workspace, available on every channel. */
async function workspace(page: Page, base: string, token: string): Promise<Page> {
  await page.setViewportSize({ width: 1400, height: 900 });
  await page.goto(`${base}/workspace/`);
  await page.getByLabel("Agent or supervisor token").fill(token);
  await page.getByLabel("Start as").selectOption({ label: "Available" });
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#conn[data-state=live]").waitFor({ timeout: 20_000 });
  return page;
}

function chat(page: Page, conversationId: string): Locator {
  return page.locator(`section.chat[data-conversation="${conversationId}"]`);
}

async function downloaded(page: Page, button: Locator): Promise<string> {
  const [download] = await Promise.all([page.waitForEvent("download"), button.click()]);
  let out = "";
  for await (const chunk of await download.createReadStream()) out += chunk;
  return out;
}

/** The whole flow; with a second chat on Beth's desk (screenshots of both apps mid-chat if takeScreenshots). */
async function flow(tls: boolean, takeScreenshots: boolean): Promise<void> {
  const stack = await startStack({ tls });
  const base = stack.parleyd.url;
  try {
    const beth = await workspace(await stack.newPage(), base, "ps_demo_agent_beth");
    const fred = await workspace(await stack.newPage(), base, "ps_demo_agent_fred");

    // The guest opens the messenger on a third-party host page and asks the bot.
    const host = await stack.newPage();
    await host.setViewportSize({ width: 1200, height: 860 });
    await host.goto(stack.host.url("/"));
    await launcher(host).click();
    const m: FrameLocator = messengerFrame(host);
    await m.getByLabel("Your name").fill("Grace Hopper");
    await m.getByLabel("Email").fill("grace@example.com");
    await m.getByLabel("What is it about?").selectOption({ label: "Order" });
    await m.getByLabel("Your question").fill("How long does a refund take?");
    await m.getByRole("button", { name: "Start chat" }).click();
    const log = m.getByRole("log");
    // The virtual agent answers from the knowledge base.
    await log.locator("li.msg.bot", { hasText: "From our help articles" }).first().waitFor({ timeout: 20_000 });

    // The guest asks for a person: Beth (orders) gets the offer with the bot's summary.
    await m.locator("#compose").fill("talk to a person");
    await m.locator("#compose").press("Enter");
    const offer = beth.locator("li.offer").first();
    await offer.waitFor({ timeout: 20_000 });
    // The offer carries what the bot captured: the intent and its summary.
    assert.match(await offer.innerText(), /Grace Hopper · Messenger · order[\s\S]*How long does a refund take\?[\s\S]*Intent: /);
    const convId = (await offer.getAttribute("data-conversation"))!;
    await offer.getByRole("button", { name: "Accept" }).click();
    const bethChat = chat(beth, convId);
    await bethChat.waitFor();
    // The history the bot had is there, replayed by the stream.
    await bethChat.locator("li.msg .text", { hasText: "How long does a refund take?" }).waitFor();
    await beth.locator("#context h2", { hasText: "Grace Hopper" }).waitFor();
    await beth.locator("#context dd", { hasText: "grace@example.com" }).first().waitFor();

    // Messages both ways.
    await bethChat.getByRole("textbox").fill("Hi Grace, Beth here. Let me look at your order.");
    await bethChat.getByRole("textbox").press("Enter");
    await log.locator("li.msg.agent", { hasText: "Beth here" }).waitFor();
    await m.locator("#compose").fill("Thank you! Order 1042.");
    await m.locator("#compose").press("Enter");
    await bethChat.locator("li.msg .text", { hasText: "Order 1042." }).waitFor();

    // Attachments both ways, downloaded as sent.
    await m.locator("#attach").setInputFiles({ name: "receipt.txt", mimeType: "text/plain", buffer: Buffer.from("Receipt 1042: 2 mugs") });
    await m.locator("#compose").fill("Here is my receipt");
    await m.locator("#compose").press("Enter");
    const guestFile = bethChat.getByRole("button", { name: /Download receipt\.txt/ });
    await guestFile.waitFor({ timeout: 20_000 });
    assert.equal(await downloaded(beth, guestFile), "Receipt 1042: 2 mugs");
    await bethChat.locator("input[type=file]").setInputFiles({ name: "label.txt", mimeType: "text/plain", buffer: Buffer.from("Return label for order 1042") });
    await bethChat.getByRole("textbox").fill("Your return label");
    await bethChat.getByRole("textbox").press("Enter");
    await log.locator("li.msg.agent", { hasText: "Your return label" }).waitFor();
    await log.getByRole("button", { name: /label\.txt/ }).waitFor();

    {
      // A second customer: Beth's desk holds two chats side by side.
      const anon = stack.client();
      const started = await anon.session.startGuestChat({
        requestId: randomUUID(), name: "Alan Turing", email: "alan@example.com", issueType: "order",
        firstMessage: "My parcel says delivered but it is not here.", channel: Channel.WEB_PORTAL,
      });
      const second = { id: started.conversation!.id };
      await beth.locator(`li.offer[data-conversation="${second.id}"]`).getByRole("button", { name: "Accept" }).click();
      await chat(beth, second.id).waitFor();
      await chat(beth, second.id).getByRole("textbox").fill("Hello Alan, checking with the courier now.");
      await chat(beth, second.id).getByRole("textbox").press("Enter");
      await chat(beth, second.id).locator("li.msg.own:not(.pending)").waitFor();
      // Working in the chat read it: its unread count goes.
      await beth.locator(`#chat-tabs button[data-conversation="${second.id}"] .badge`).filter({ hasText: /^$/ }).waitFor({ state: "attached" });
      await beth.locator(`#chat-tabs button[data-conversation="${convId}"]`).click();
      await beth.locator("#context h2", { hasText: "Grace Hopper" }).waitFor();
      assert.equal(await beth.locator("#chats section.chat").count(), 2);
      if (takeScreenshots) {
        mkdirSync(screenshots, { recursive: true });
        await beth.screenshot({ path: join(screenshots, "workspace.png"), fullPage: true });
        // parleyd's demo page, with its messenger open in a chat with the bot.
        const demo = await stack.newPage();
        await demo.setViewportSize({ width: 1200, height: 860 });
        await demo.goto(`${base}/`);
        await launcher(demo).click();
        const dm = messengerFrame(demo);
        await dm.getByLabel("Your name").fill("Dana Demo");
        await dm.getByLabel("Email").fill("dana@example.com");
        await dm.getByLabel("What is it about?").selectOption({ label: "Order" });
        await dm.getByLabel("Your question").fill("Where is my order?");
        await dm.getByRole("button", { name: "Start chat" }).click();
        await dm.getByRole("log").locator("li.msg.bot").nth(1).waitFor({ timeout: 20_000 });
        await demo.screenshot({ path: join(screenshots, "messenger.png") });
      }
    }

    // A case with a consumer record for the guest.
    await beth.locator("#case-desc").fill("Refund for order 1042");
    await beth.getByRole("button", { name: "Create consumer and case" }).click();
    // The case shows in the log and, refreshed by it, in the context panel.
    await beth.locator("#context .cases li", { hasText: /CS\d+: Refund for order 1042/ }).waitFor();
    await bethChat.locator("li.system", { hasText: /Case CS\d+ created with a consumer record/ }).waitFor();

    // Transfer to Fred with a note; Fred accepts in his own workspace.
    await beth.locator("#transfer-target option", { hasText: "Fred Luddy" }).waitFor({ state: "attached" });
    const fredValue = await beth.locator("#transfer-target option", { hasText: "Fred Luddy" }).getAttribute("value");
    await beth.locator("#transfer-target").selectOption(fredValue!);
    await beth.locator("#transfer-note").fill("Refund case opened; please confirm the amount.");
    await beth.getByRole("button", { name: "Transfer", exact: true }).click();
    const fredOffer = fred.locator(`li.offer[data-conversation="${convId}"]`);
    await fredOffer.waitFor({ timeout: 20_000 });
    assert.match(await fredOffer.innerText(), /Transferred by Beth Anglin: Refund case opened; please confirm the amount\./);
    await fredOffer.getByRole("button", { name: "Accept" }).click();
    await bethChat.locator(".notice", { hasText: "Transferred" }).waitFor();
    const fredChat = chat(fred, convId);
    await fredChat.locator("li.msg .text", { hasText: "Order 1042." }).waitFor();
    await fredChat.getByRole("textbox").fill("Fred here: the refund of €48 is confirmed.");
    await fredChat.getByRole("textbox").press("Enter");
    await log.locator("li.msg.agent", { hasText: "€48 is confirmed" }).waitFor();
    await fred.locator("#context .cases li", { hasText: /CS\d+: Refund for order 1042/ }).waitFor();

    // The guest's own view of the log, through the messenger's guest token:
    // followed from before the close, it gets the closing event too.
    const frame = await waitFor(() => host.frames().find((f) => f.url().startsWith(`${base}/messenger/`)), { message: "the messenger frame did not load" });
    // Chromium denies storage to a page whose certificate errors it was told
    // to ignore (the TLS run's self-signed one): that run checks the page
    // and the transcript only.
    const saved = await frame.evaluate(() => { try { return Object.values(localStorage).join("\n"); } catch { return undefined; } });
    assert.ok(tls || saved !== undefined, "the messenger's storage is readable on HTTP");
    const guestToken = saved === undefined ? undefined : /"guestToken":"([^"]+)"/.exec(saved)?.[1];
    assert.ok(saved === undefined || guestToken, "the messenger keeps its guest token");
    const guestClosed = guestToken === undefined ? undefined : nextMatching(
      stack.client(guestToken).messaging.subscribe({ conversationId: convId, afterSeq: 0n }, { signal: AbortSignal.timeout(30_000) }),
      (r) => (r.item.case === "event" && r.item.value.kind.case === "conversationClosed" ? r.item.value.kind.value : undefined),
      30_000);
    guestClosed?.catch(() => undefined); // awaited below

    // Fred closes with a wrap-up: an outcome and internal notes.
    await fred.locator("#wrapup-outcome").selectOption("Resolved");
    await fred.locator("#wrapup-notes").fill("Refund confirmed");
    await fred.getByRole("button", { name: "Close conversation" }).click();
    await fredChat.locator("li.system", { hasText: /^Closed/ }).waitFor();
    // The guest sees the end and the transcript, and never the wrap-up.
    await m.getByRole("button", { name: "Download transcript" }).waitFor({ timeout: 20_000 });
    if (guestClosed) {
      const closing = await guestClosed;
      assert.doesNotMatch(closing.reason, /Refund confirmed|Resolved/, "the close reason the guest reads carries the wrap-up");
    }
    assert.doesNotMatch(await m.locator("body").innerText(), /Refund confirmed/, "the messenger shows the wrap-up notes");
    const transcript = await downloaded(host, m.getByRole("button", { name: "Download transcript" }));
    assert.match(transcript, /the refund of €48 is confirmed/);
    assert.doesNotMatch(transcript, /Refund confirmed/, "the transcript carries the wrap-up notes");

    // The whole log on the new agent's side: every event once, in order, no gap.
    const seqs = await fredChat.locator("ol.log > li[data-seq]").evaluateAll((els) => els.map((e) => Number((e as HTMLElement).dataset.seq)));
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1));

    if (tls) {
      // Over TLS the browser speaks HTTP/2 to parleyd.
      const protocols = await fred.evaluate(() => [...new Set(performance.getEntriesByType("resource").map((e) => (e as PerformanceResourceTiming).nextHopProtocol))]);
      assert.deepEqual(protocols, ["h2"]);
    }
  } finally {
    await stack.close();
  }
}

test("a guest and agents complete the whole flow on HTTP/1.1", async () => {
  await flow(false, process.env.PARLEY_SCREENSHOTS === "1");
});

test("the same flow over TLS (HTTP/2)", async () => {
  await flow(true, false);
});
