// The harness of every browser test (npm run test:browser): a real parleyd,
// a real Chromium and a "third-party" host site on another origin.
//
//   const stack = await startStack();            // or startStack({ tls: true, flags: [...] })
//   after(() => stack.close());
//   const page = await stack.newPage();          // a fresh browser context (own storage)
//   await page.goto(stack.host.url("/"));        // a host page with the loader snippet
//   const frame = messengerFrame(page);          // the messenger iframe (a FrameLocator)
//   const agent = stack.client(DEMO.agents.beth); // the TS client, as an agent
//
// What it does:
// - parleyd: `npm run build:apps` then `go build` once per test run (the
//   node test runner runs each file in its own process; the binary is kept
//   in a temporary directory named after the runner's pid, and stale ones of
//   finished runs are removed), then started on 127.0.0.1 with a free port,
//   a fresh SQLite file and the demo bootstrap; with { tls: true } it serves
//   TLS (HTTP/2) with a self-signed certificate made here by openssl, which
//   the browser contexts accept (ignoreHTTPSErrors) and the Node clients
//   trust; { flags } adds parleyd flags.
// - Chromium: Debian's /usr/bin/chromium through playwright-core (no browser
//   download), headless, a new profile per launch.
// - The host site: a Node http server on 127.0.0.1 with another port
//   (another origin), serving "/" with the loader snippet and any page a
//   test adds with host.page(); its origin is registered as a site through
//   AccessService with the demo admin token (host.siteId).
// - close() stops all of it and removes the temporary files.
//
// PARLEY_BROWSER_DEBUG=1 prints parleyd's log and the pages' console.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { request as httpsRequest } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Readable } from "node:stream";
import { createHmac } from "node:crypto";

import { chromium, type Browser, type BrowserContext, type FrameLocator, type Locator, type Page } from "playwright-core";

import { createParleyClient, type ParleyClient } from "../src/index.js";

const webRoot = resolve(import.meta.dirname, "..");
const repoRoot = resolve(webRoot, "../..");
const debug = process.env.PARLEY_BROWSER_DEBUG === "1";

/** The demo bootstrap's public tokens (server/internal/bootstrap/demo.yaml). */
export const DEMO = {
  admin: "ps_demo_admin_token",
  supervisor: "ps_demo_supervisor",
  agents: { beth: "ps_demo_agent_beth", fred: "ps_demo_agent_fred", abel: "ps_demo_agent_abel" },
  /** The demo customer issuer (server/internal/identity/demo.yaml). */
  issuer: "https://portal.example.com",
  audience: "parley",
  secret: "parley-demo-portal-secret-do-not-use-in-production",
} as const;

/** Chromium's flags for tests (see /work/shared/TOOLCHAIN.md). */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-quic",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
];

// ---------------------------------------------------------------- parleyd

/** Options of {@link startParleyd}. */
export interface ParleydOptions {
  /** Serve TLS with a self-signed certificate for 127.0.0.1 and localhost. */
  tls?: boolean;
  /** Extra parleyd flags, e.g. ["-heartbeat", "2s"]. */
  flags?: string[];
}

/** A running parleyd. */
export interface Parleyd {
  /** Base URL, e.g. http://127.0.0.1:41234 (https with tls). */
  url: string;
  /** The PEM certificate it serves, with tls. */
  cert?: string;
  /** A fetch that trusts cert (Node's own fetch when there is no TLS). */
  fetch: typeof globalThis.fetch;
  /** Everything parleyd wrote to standard error so far. */
  log(): string;
  /** SIGTERM, wait for the exit, remove the database. */
  stop(): Promise<void>;
}

/** Builds the web apps and parleyd, once per test run; returns the binary. */
export function buildParleyd(): string {
  const base = join(tmpdir(), "parley-browser-tests");
  mkdirSync(base, { recursive: true });
  // Binaries of finished runs (their runner process is gone) are removed.
  for (const name of readdirSync(base)) {
    const pid = Number(name.replace(/^run-/, ""));
    if (Number.isInteger(pid) && pid !== process.ppid && !alive(pid)) {
      rmSync(join(base, name), { recursive: true, force: true });
    }
  }
  const dir = join(base, `run-${process.ppid}`);
  const bin = join(dir, "parleyd");
  if (!existsSync(bin)) {
    mkdirSync(dir, { recursive: true });
    execFileSync(process.execPath, ["build.mjs"], { cwd: webRoot, stdio: debug ? "inherit" : "ignore" });
    execFileSync("go", ["build", "-o", bin + ".tmp", "./server/cmd/parleyd"], { cwd: repoRoot, stdio: "inherit" });
    execFileSync("mv", [bin + ".tmp", bin]);
  }
  return bin;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Starts parleyd on a free port with a fresh database and the demo bootstrap. */
export async function startParleyd(opts: ParleydOptions = {}): Promise<Parleyd> {
  const bin = buildParleyd();
  const dir = mkdtempSync(join(tmpdir(), "parley-browser-"));
  const args = ["-addr", "127.0.0.1:0", "-db", join(dir, "parley.db")];
  let cert: string | undefined;
  if (opts.tls) {
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
      "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
    ], { stdio: "ignore" });
    cert = readFileSync(join(dir, "cert.pem"), "utf8");
    args.push("-tls-cert", join(dir, "cert.pem"), "-tls-key", join(dir, "key.pem"));
  }
  args.push(...(opts.flags ?? []));
  const child: ChildProcess = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    log += chunk;
    if (debug) process.stderr.write(`[parleyd] ${chunk}`);
  });
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`parleyd did not start in 30 s:\n${log}`)), 30_000);
    const onData = () => {
      const m = /parleyd listening on (https?:\/\/\S+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        child.stderr!.off("data", onData);
        resolveUrl(m[1]);
      }
    };
    child.stderr!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`parleyd exited with ${code}:\n${log}`));
    });
  });
  return {
    url,
    cert,
    fetch: cert ? fetchTrusting(cert) : globalThis.fetch,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(killer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A fetch over node:https that trusts ca (Node's own fetch cannot be given a
 * CA): HTTP/1.1, streamed responses, abortable; enough for the TS client.
 */
function fetchTrusting(ca: string): typeof globalThis.fetch {
  return async (input, init) => {
    const req = new Request(input, init);
    const body = req.body ? Buffer.from(await req.arrayBuffer()) : undefined;
    return new Promise<Response>((resolveResponse, reject) => {
      const headers: Record<string, string> = {};
      req.headers.forEach((v, k) => (headers[k] = v));
      const out = httpsRequest(req.url, { method: req.method, headers, ca, signal: init?.signal ?? undefined }, (res) => {
        const resHeaders = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) resHeaders.append(k, one);
        }
        const stream = Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>;
        resolveResponse(new Response(stream, { status: res.statusCode, statusText: res.statusMessage, headers: resHeaders }));
      });
      out.on("error", reject);
      out.end(body);
    });
  };
}

// ---------------------------------------------------------------- host site

/** The third-party site: another origin, serving pages that embed the messenger. */
export interface HostSite {
  /** e.g. http://127.0.0.1:41235 */
  origin: string;
  /** The id of the site registered for origin (AccessService.CreateSite). */
  siteId: string;
  /** origin + path */
  url(path: string): string;
  /** Serves body at path (an HTML page unless contentType says otherwise). */
  page(path: string, body: string, contentType?: string): void;
  /** The loader snippet a site pastes, for siteId (or another id). */
  snippet(siteId?: string): string;
  stop(): Promise<void>;
}

/** Options of {@link startHost}. */
export interface HostOptions {
  /** Register the host's origin as a site (default true). */
  register?: boolean;
  /** The site's display name (default "Browser test shop"). */
  siteName?: string;
}

/**
 * Starts a static host site on 127.0.0.1 (a port of its own: another origin
 * than parleyd's) and registers its origin as a site of parleyd.
 */
export async function startHost(parleyd: Parleyd, opts: HostOptions = {}): Promise<HostSite> {
  const pages = new Map<string, { body: string; type: string }>();
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const p = pages.get(path);
    if (!p) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": p.type, "cache-control": "no-store" }).end(p.body);
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let siteId = "";
  if (opts.register ?? true) {
    const admin = clientFor(parleyd, DEMO.admin);
    const res = await admin.access.createSite({
      site: { displayName: opts.siteName ?? "Browser test shop", allowedOrigins: [origin] },
    });
    siteId = res.site!.id;
  }
  const snippet = (id = siteId) => `<script async src="${parleyd.url}/messenger.js" data-site-id="${id}"></script>`;
  pages.set("/", { type: "text/html; charset=utf-8", body: shopPage("Host shop", snippet()) });
  return {
    origin,
    siteId,
    url: (path) => origin + path,
    page: (path, body, type = "text/html; charset=utf-8") => void pages.set(path, { body, type }),
    snippet,
    stop: () => new Promise<void>((done) => server.close(() => done())),
  };
}

/** A plain host page with extra markup in its head (the loader snippet, say). */
export function shopPage(title: string, head: string, body = ""): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title>${head}</head>` +
    `<body><h1>${title}</h1><p>A page of a site that embeds the Parley messenger.</p>${body}</body></html>`;
}

// ---------------------------------------------------------------- browser

/** Launches Debian's Chromium, headless, with a new profile. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS, headless: true });
}

/** The messenger iframe on a page that embeds it through the loader. */
export function messengerFrame(page: Page): FrameLocator {
  return page.frameLocator('iframe[title="Chat with us"]');
}

/** The loader's launcher button (in its shadow root; Playwright pierces open ones). */
export function launcher(page: Page): Locator {
  return page.locator("button[aria-controls=parley-messenger]");
}

// ---------------------------------------------------------------- the stack

/** Options of {@link startStack}. */
export interface StackOptions extends ParleydOptions, HostOptions {}

/** parleyd, a host site on another origin, and a browser. */
export interface Stack {
  parleyd: Parleyd;
  host: HostSite;
  browser: Browser;
  /** A new browser context (its own storage) and a page in it. */
  newPage(): Promise<Page>;
  /** A TS client of parleyd with token (none: anonymous). */
  client(token?: string | (() => string | undefined)): ParleyClient;
  /** Stops everything; safe to call twice. */
  close(): Promise<void>;
}

/** Starts parleyd, the host site and Chromium; close() stops them. */
export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const parleyd = await startParleyd(opts);
  const closers: Array<() => Promise<unknown>> = [() => parleyd.stop()];
  const close = async () => {
    for (const c of closers.splice(0).reverse()) await c().catch((err) => console.error("harness: closing:", err));
  };
  try {
    const host = await startHost(parleyd, opts);
    closers.push(() => host.stop());
    const browser = await launchBrowser();
    closers.push(() => browser.close());
    const contexts: BrowserContext[] = [];
    return {
      parleyd,
      host,
      browser,
      async newPage() {
        const context = await browser.newContext({ ignoreHTTPSErrors: Boolean(opts.tls) });
        contexts.push(context);
        const page = await context.newPage();
        if (debug) page.on("console", (m) => process.stderr.write(`[page ${page.url()}] ${m.type()}: ${m.text()}\n`));
        return page;
      },
      client: (token) => clientFor(parleyd, token),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** A TS client of parleyd, as the apps make it (Connect, JSON). */
export function clientFor(parleyd: Parleyd, token?: string | (() => string | undefined)): ParleyClient {
  return createParleyClient(parleyd.url, { token, fetch: parleyd.fetch });
}

// ---------------------------------------------------------------- utilities

/** Options of {@link waitFor}. */
export interface WaitOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /** Poll this often (default 50 ms). */
  intervalMs?: number;
  /** Said in the error when it gives up. */
  message?: string;
}

/**
 * Calls fn until it returns a truthy value (which it returns) or the time is
 * up (then it throws, with fn's last error if it threw).
 */
export async function waitFor<T>(fn: () => T | Promise<T>, opts: WaitOptions = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
      last = undefined;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`waitFor: ${opts.message ?? "condition not met"} within ${opts.timeoutMs ?? 10_000} ms${last ? `: ${String(last)}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}

/** The first item of stream for which pick returns something, within timeoutMs. */
export async function nextMatching<T, R>(stream: AsyncIterable<T>, pick: (item: T) => R | undefined, timeoutMs = 10_000): Promise<R> {
  const it = stream[Symbol.asyncIterator]();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`nextMatching: nothing matched within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    for (;;) {
      const r = await Promise.race([it.next(), timeout]);
      if (r.done) throw new Error("nextMatching: the stream ended before a match");
      const v = pick(r.value);
      if (v !== undefined) return v;
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Signs a customer JWT (HS256) for the demo issuer, as a portal would:
 * what a host page passes to Parley.identify.
 */
export function demoCustomerToken(sub: string, claims: { name?: string; email?: string; ttlSeconds?: number } = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({
    iss: DEMO.issuer, aud: DEMO.audience, sub, name: claims.name, email: claims.email, iat: now,
    exp: now + (claims.ttlSeconds ?? 600),
  });
  const sig = createHmac("sha256", DEMO.secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}
