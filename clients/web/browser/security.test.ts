// The messenger's isolation from the page that embeds it, in Chromium:
// (a) a hostile host page (its own CSS aimed at everything, scripts
//     wrapping fetch, XMLHttpRequest and postMessage, listening to every
//     message, prying at the iframe) reads no message text and no token,
//     and cannot stop a chat;
// (b) an origin the site does not allow cannot load the messenger, neither
//     through the loader (403) nor by framing the messenger page with a
//     forged parent= (frame-ancestors);
// (c) every page parleyd serves carries the CSP and security headers, and
//     the browser enforces the CSP;
// (d) over TLS, the same, with HTTP/2;
// (e) the demo page's signed-in customer reaches the messenger through
//     Parley.identify, as a site's would: a JWT the page signs, handed over
//     when the messenger asks.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import type { Frame, Page, Response } from "playwright-core";

import {
  demoCustomerToken,
  launcher,
  messengerFrame,
  shopPage,
  startHost,
  startStack,
  waitFor,
  type HostSite,
  type Stack,
} from "./harness.js";

let stack: Stack;

before(async () => {
  stack = await startStack();
});

after(async () => {
  await stack?.close();
});

/** The messenger's frame on page, once it has loaded from parleyd. */
async function messenger(page: Page): Promise<Frame> {
  return waitFor(() => page.frames().find((f) => f.url().startsWith(`${stack.parleyd.url}/messenger/`)), {
    message: "the messenger frame did not load",
  });
}

/** Records every response page gets. */
function responses(page: Page): Response[] {
  const seen: Response[] = [];
  page.on("response", (r) => seen.push(r));
  return seen;
}

// The hostile page's own style sheet: aimed at iframes, buttons, divs and
// everything else, all !important.
const HOSTILE_CSS = `
* { all: unset !important; font-size: 1px !important; }
html, body { display: block !important; }
div, iframe, button, span { display: none !important; visibility: hidden !important; opacity: 0 !important;
  width: 0 !important; height: 0 !important; transform: scale(0) !important; pointer-events: none !important;
  position: absolute !important; left: -9999px !important; clip-path: inset(50%) !important; filter: blur(20px) !important; }
:host, ::slotted(*) { display: none !important; }
/* Common page CSS that makes the body the containing block of position: fixed
   elements; with a long body, a launcher inside it would sit off-screen. */
body { transform: translateZ(0) !important; filter: blur(0) !important; min-height: 300vh !important; }
`;

// The hostile page's script, run before the loader: it records in
// window.__captured everything it can see.
const HOSTILE_JS = `
window.__captured = [];
const note = (what, v) => { try { window.__captured.push(what + " " + (typeof v === "string" ? v : JSON.stringify(v))); } catch (e) { window.__captured.push(what + " <" + e + ">"); } };
const realFetch = window.fetch;
window.fetch = function (input, init) { note("fetch", [String(input && input.url || input), init && init.body ? String(init.body) : ""]); return realFetch.apply(this, arguments); };
const open = XMLHttpRequest.prototype.open, send = XMLHttpRequest.prototype.send;
XMLHttpRequest.prototype.open = function (m, u) { note("xhr.open", [m, String(u)]); return open.apply(this, arguments); };
XMLHttpRequest.prototype.send = function (b) { note("xhr.send", String(b)); return send.apply(this, arguments); };
const realPost = window.postMessage;
window.postMessage = function (m, o) { note("window.postMessage", [m, o]); return realPost.apply(this, arguments); };
addEventListener("message", (e) => note("message", { origin: e.origin, data: e.data }), true);
const attach = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (init) { const r = attach.call(this, init); window.__roots = (window.__roots || []).concat(r); return r; };
// Pry at the iframe now and then: its document, its storage, its frames.
window.__pry = () => {
  const frames = [...(window.__roots || [])].flatMap((r) => [...r.querySelectorAll("iframe")]).concat([...document.querySelectorAll("iframe")]);
  for (const f of frames) {
    note("src", f.src);
    note("contentDocument", f.contentDocument === null ? "null" : "READABLE");
    for (const [what, read] of [
      ["document", () => f.contentWindow.document.body.innerText],
      ["localStorage", () => JSON.stringify(f.contentWindow.localStorage)],
      ["sessionStorage", () => JSON.stringify(f.contentWindow.sessionStorage)],
      ["location", () => f.contentWindow.location.href],
      ["name", () => f.contentWindow.name],
    ]) {
      try { note("READ " + what, read()); } catch (e) { note("denied " + what, e.name); }
    }
    try { f.contentWindow.postMessage({ type: "parley:token-request", id: "x" }, "*"); } catch (e) { note("post", e.name); }
  }
  note("own localStorage", JSON.stringify(localStorage));
  note("cookies", document.cookie);
  note("resources", performance.getEntriesByType("resource").map((r) => r.name));
};
setInterval(window.__pry, 200);
`;

test("a hostile host page can neither read nor break the messenger", async () => {
  const { host } = stack;
  host.page("/hostile.css", HOSTILE_CSS, "text/css");
  host.page("/hostile.js", HOSTILE_JS, "text/javascript");
  host.page("/hostile", shopPage("Hostile shop", `<link rel="stylesheet" href="/hostile.css"><script src="/hostile.js"></script>${host.snippet()}`));
  const page = await stack.newPage();
  await page.goto(host.url("/hostile"));

  // The launcher and the panel show and work despite the page's CSS.
  const button = launcher(page);
  await button.waitFor({ state: "visible" });
  const box = await button.boundingBox();
  assert.ok(box && box.width >= 40 && box.height >= 40, `launcher box ${JSON.stringify(box)}`);
  const viewport = page.viewportSize()!;
  assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.width <= viewport.width && box.y + box.height <= viewport.height, `the launcher is inside the ${JSON.stringify(viewport)} viewport: ${JSON.stringify(box)}`);
  await button.click();
  assert.equal(await button.getAttribute("aria-expanded"), "true");
  const panel = await page.locator('iframe[title="Chat with us"]').boundingBox();
  assert.ok(panel && panel.width >= 300 && panel.height >= 400, `panel box ${JSON.stringify(panel)}`);

  // A short chat: the pre-chat form, a question, the bot's answer, a message.
  const chat = messengerFrame(page);
  const question = "canary-question-7d1f: where is my parcel?";
  const followUp = "canary-message-41be: it was due on Monday";
  await chat.getByLabel("Your name").fill("Ada Canary");
  await chat.getByLabel("Email").fill("ada.canary@example.com");
  await chat.getByLabel("What is it about?").selectOption({ label: "Order" });
  await chat.getByLabel("Your question").fill(question);
  await chat.getByRole("button", { name: "Start chat" }).click();
  const log = chat.getByRole("log");
  await log.getByText(question).waitFor();
  await log.locator(".msg.bot").first().waitFor({ timeout: 15_000 });
  await chat.getByPlaceholder("Write a message…").fill(followUp);
  await chat.getByRole("button", { name: "Send", exact: true }).click();
  await log.getByText(followUp).waitFor();
  await waitFor(async () => !(await log.locator(".msg.mine.pending").count()), { message: "the follow-up was not sent" });
  const texts = await log.locator(".msg .text").allInnerTexts();
  assert.ok(texts.length >= 3, `messages in the log: ${texts}`);

  // What the page could have seen: nothing of the chat, no token.
  const frame = await messenger(page);
  const stored = await frame.evaluate(() => Object.values(localStorage).join("\n"));
  const guestToken = /"guestToken":"([^"]+)"/.exec(stored)?.[1];
  assert.ok(guestToken, `the messenger keeps its guest token in its own storage: ${stored}`);
  await page.evaluate(() => (window as unknown as { __pry(): void }).__pry());
  const captured: string[] = await page.evaluate(() => (window as unknown as { __captured: string[] }).__captured);
  const all = captured.join("\n");
  for (const secret of [question, followUp, "canary-question-7d1f", "canary-message-41be", "ada.canary@example.com", guestToken, ...texts]) {
    assert.ok(!all.includes(secret), `the host page saw ${JSON.stringify(secret)}`);
  }
  assert.ok(!/READ |READABLE/.test(all), `the host page read the iframe:\n${captured.filter((c) => /READ/.test(c)).join("\n")}`);
  assert.ok(all.includes("denied document SecurityError") && all.includes("denied localStorage SecurityError"), "the page's attempts were denied");
  // What it did see: the protocol's small messages, from Parley's origin.
  const messages = captured.filter((c) => c.startsWith("message ")).map((c) => JSON.parse(c.slice("message ".length)));
  assert.ok(messages.some((m) => m.data?.type === "parley:ready"), "the page saw parley:ready");
  for (const m of messages) {
    assert.equal(m.origin, stack.parleyd.url, `a message from ${m.origin}`);
    assert.ok(String(m.data?.type).startsWith("parley:"), `message ${JSON.stringify(m.data)}`);
    for (const key of Object.keys(m.data ?? {})) {
      assert.ok(["type", "id", "count", "signedIn", "token"].includes(key), `message field ${key}: ${JSON.stringify(m.data)}`);
    }
  }
  // The page's forged token request got no answer the page could read,
  // and the chat goes on: the visitor can still send.
  await chat.getByPlaceholder("Write a message…").fill("still working");
  await chat.getByRole("button", { name: "Send", exact: true }).click();
  await log.getByText("still working").waitFor();
});

test("an origin the site does not allow cannot load the messenger", async () => {
  const { host, parleyd } = stack;
  // Another origin, not registered, pasting the registered site's snippet.
  const stranger: HostSite = await startHost(parleyd, { register: false });
  try {
    stranger.page("/", shopPage("Copycat shop", host.snippet()));
    const page = await stack.newPage();
    const seen = responses(page);
    await page.goto(stranger.url("/"));
    await launcher(page).click();
    const frame = await messenger(page);
    const refusal = await waitFor(() => seen.find((r) => r.url().startsWith(`${parleyd.url}/messenger/?`)));
    assert.equal(refusal.status(), 403);
    await waitFor(async () => (await frame.locator("body").innerText()).includes("may not embed the messenger"));
    assert.equal(await frame.locator("form, #app, input, textarea").count(), 0, "the refusal page holds nothing of the app");
    // Nothing of the app was fetched, and no API call made.
    assert.deepEqual(seen.map((r) => r.url()).filter((u) => u.startsWith(parleyd.url) && !u.startsWith(`${parleyd.url}/messenger/?`) && !u.endsWith("/messenger.js")), []);

    // Framing the messenger page directly, claiming the allowed host as
    // parent: the server serves it for that parent only, and the browser
    // refuses to show it here.
    const forged = `${parleyd.url}/messenger/?site=${host.siteId}&parent=${encodeURIComponent(host.origin)}`;
    stranger.page("/forged", shopPage("Forger", "", `<iframe title="forged" src="${forged}" width="400" height="600"></iframe>`));
    const page2 = await stack.newPage();
    const seen2 = responses(page2);
    const violations: string[] = [];
    page2.on("console", (m) => violations.push(m.text()));
    await page2.goto(stranger.url("/forged"));
    const served = await waitFor(() => seen2.find((r) => r.url() === forged));
    assert.equal(served.status(), 200);
    assert.match((await served.allHeaders())["content-security-policy"], new RegExp(`frame-ancestors ${host.origin}$`));
    await waitFor(() => violations.some((v) => v.includes("frame-ancestors")), { message: `no frame-ancestors violation: ${violations}` });
    // Give a rendered app time to start: it would fetch its script and call the API.
    await page2.waitForTimeout(1000);
    assert.deepEqual(seen2.map((r) => r.url()).filter((u) => u.startsWith(parleyd.url) && u !== forged), []);
    const forgedFrame = page2.frames().find((f) => f.name() === "" && f !== page2.mainFrame());
    assert.ok(!forgedFrame || !forgedFrame.url().startsWith(parleyd.url) || (await forgedFrame.locator("form").count()) === 0);

    // The allowed host still loads it; once the admin removes its origin,
    // the next load is refused.
    const ok = await stack.newPage();
    const okSeen = responses(ok);
    await ok.goto(host.url("/"));
    await launcher(ok).click();
    await messengerFrame(ok).getByRole("button", { name: "Start chat" }).waitFor();
    assert.equal(okSeen.find((r) => r.url().startsWith(`${parleyd.url}/messenger/?`))?.status(), 200);
    const admin = stack.client("ps_demo_admin_token");
    await admin.access.updateSite({ site: { id: host.siteId, displayName: "Browser test shop", allowedOrigins: ["https://elsewhere.example.com"] } });
    try {
      const again = await stack.newPage();
      const againSeen = responses(again);
      await again.goto(host.url("/"));
      const r = await waitFor(() => againSeen.find((x) => x.url().startsWith(`${parleyd.url}/messenger/?`)));
      assert.equal(r.status(), 403);
    } finally {
      await admin.access.updateSite({ site: { id: host.siteId, displayName: "Browser test shop", allowedOrigins: [host.origin] } });
    }
  } finally {
    await stranger.stop();
  }
});

const DIRECTIVES = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "connect-src 'self'",
  "form-action 'none'",
  "base-uri 'none'",
];

test("every page carries the CSP and security headers, and the browser enforces them", async () => {
  const { parleyd, host } = stack;
  const messengerUrl = `/messenger/?site=${host.siteId}&parent=${encodeURIComponent(host.origin)}`;
  const pages: Array<[string, number, string]> = [
    ["/", 200, "'none'"],
    ["/messenger.js", 200, "'none'"],
    [messengerUrl, 200, host.origin],
    ["/messenger/main.js", 200, "'none'"],
    ["/messenger/style.css", 200, "'none'"],
    ["/demo/main.js", 200, "'none'"],
    ["/workspace/", -1, "'none'"], // 200 once the workspace is built
    ["/no-such-page", 404, "'none'"],
    [`/messenger/?site=${host.siteId}&parent=https%3A%2F%2Fevil.example.com`, 403, "*"],
  ];
  for (const [path, status, ancestors] of pages) {
    for (const method of ["GET", "HEAD"]) {
      const res = await parleyd.fetch(parleyd.url + path, { method });
      if (status !== -1) assert.equal(res.status, status, `${method} ${path}`);
      const csp = res.headers.get("content-security-policy") ?? "";
      for (const d of DIRECTIVES) assert.ok(csp.includes(d), `${method} ${path}: CSP ${csp} lacks ${d}`);
      assert.ok(csp.endsWith(`frame-ancestors ${ancestors}`), `${method} ${path}: CSP ${csp}`);
      assert.ok(!csp.includes("unsafe-"), `${method} ${path}: CSP ${csp}`);
      assert.equal(res.headers.get("x-content-type-options"), "nosniff", `${method} ${path}`);
      assert.ok(res.headers.get("referrer-policy"), `${method} ${path}: no Referrer-Policy`);
      assert.ok(!/max-age=[1-9]/.test(res.headers.get("cache-control") ?? "no cache-control"), `${method} ${path}: ${res.headers.get("cache-control")}`);
      await res.arrayBuffer();
    }
  }
  const types: Record<string, string> = {
    "/": "text/html; charset=utf-8",
    "/messenger.js": "text/javascript; charset=utf-8",
    "/messenger/style.css": "text/css; charset=utf-8",
    [messengerUrl]: "text/html; charset=utf-8",
  };
  for (const [path, type] of Object.entries(types)) {
    assert.equal((await parleyd.fetch(parleyd.url + path)).headers.get("content-type"), type, path);
  }

  // In the browser: the demo page and the messenger frame run no injected
  // inline script and load no image from elsewhere.
  const page = await stack.newPage();
  await page.goto(parleyd.url + "/");
  const frame = await messenger(page);
  for (const target of [page.mainFrame(), frame]) {
    const blocked = await target.evaluate(async () => {
      const violations: string[] = [];
      document.addEventListener("securitypolicyviolation", (e) => violations.push(e.effectiveDirective));
      const s = document.createElement("script");
      s.textContent = "window.__inlineRan = true";
      document.head.append(s);
      const img = document.createElement("img");
      img.src = "https://images.example.com/pixel.png";
      document.body.append(img);
      await new Promise((r) => setTimeout(r, 300));
      return { ran: (window as unknown as { __inlineRan?: boolean }).__inlineRan === true, violations };
    });
    assert.equal(blocked.ran, false, `${target.url()}: an injected inline script ran`);
    for (const d of ["script-src-elem", "img-src"]) {
      assert.ok(blocked.violations.includes(d), `${target.url()}: no ${d} violation (${blocked.violations})`);
    }
  }
});

test("over TLS the messenger is served with HTTP/2 and the same protections", async () => {
  const tls = await startStack({ tls: true });
  try {
    const page = await tls.newPage();
    await page.goto(tls.host.url("/"));
    await launcher(page).click();
    const frame = await waitFor(() => page.frames().find((f) => f.url().startsWith(`${tls.parleyd.url}/messenger/`)));
    await messengerFrame(page).getByRole("button", { name: "Start chat" }).waitFor();
    const protocols = await frame.evaluate(() =>
      performance.getEntries().map((e) => (e as PerformanceResourceTiming).nextHopProtocol).filter(Boolean),
    );
    assert.ok(protocols.length >= 3 && protocols.every((p) => p === "h2"), `protocols ${protocols}`);
    const res = await tls.parleyd.fetch(`${tls.parleyd.url}/messenger/?site=${tls.host.siteId}&parent=${encodeURIComponent(tls.host.origin)}`);
    assert.equal(res.status, 200);
    assert.ok(res.headers.get("content-security-policy")?.endsWith(`frame-ancestors ${tls.host.origin}`));
  } finally {
    await tls.close();
  }
});

test("the demo page signs a customer in through Parley.identify", async () => {
  const { parleyd } = stack;
  const page = await stack.newPage();
  await page.goto(parleyd.url + "/");
  await page.getByRole("button", { name: "Sign in as a demo customer" }).click();
  await page.getByText("Signed in as Dana Demo").waitFor();
  await launcher(page).click();
  const chat = messengerFrame(page);
  // Signed in: the short form, without name and email.
  await chat.getByRole("button", { name: "Start chat" }).waitFor();
  assert.equal(await chat.getByLabel("Email").count(), 0, "a signed-in customer is not asked for an email");
  await chat.getByLabel("What is it about?").selectOption({ label: "Order" });
  await chat.getByLabel("Your question").fill("signed-in question 5c2e");
  await chat.getByRole("button", { name: "Start chat" }).click();
  await chat.getByRole("log").getByText("signed-in question 5c2e").waitFor();
  // The chat is the customer's (the JWT the page signed in WebCrypto was
  // accepted), and the messenger keeps no guest token for it.
  const customer = stack.client(demoCustomerToken("demo-customer-1"));
  const mine = await waitFor(async () => (await customer.session.listMyConversations({})).conversations);
  assert.equal(mine.length, 1);
  const frame = await messenger(page);
  assert.ok(!(await frame.evaluate(() => Object.values(localStorage).join("\n"))).includes("guestToken\":\""));
  // Signed out: the messenger forgets the customer's chat.
  await page.getByRole("button", { name: "Sign out" }).click();
  await chat.getByLabel("Email").waitFor();
});
