// The messenger tests' world: a real parleyd (built from this repository,
// fresh SQLite file, demo bootstrap), the messenger built with esbuild and
// served on the API's origin by a small proxy in front of parleyd (so the
// tests can also cut the network under the page), a site allowing that
// origin, and Chromium.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { build } from "esbuild";
import { chromium, type Browser, type Page } from "playwright-core";

import { createParleyClient } from "../src/index.js";

const webRoot = resolve(import.meta.dirname, "..");
const repoRoot = resolve(webRoot, "../..");

/** Env is a running parleyd, the messenger in front of it, a site and a browser. */
export interface Env {
  /** The origin of the API and of /messenger/. */
  base: string;
  siteId: string;
  browser: Browser;
  /** Cuts the page's network: the page goes offline and its open streams break. */
  dropNetwork(page: Page): Promise<void>;
  restoreNetwork(page: Page): Promise<void>;
  stop(): Promise<void>;
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const addr = server.address();
  if (!addr || typeof addr === "string") throw new Error("no address");
  return addr.port;
}

/** Starts everything; stop() ends it all. */
export async function startEnv(): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), "parley-messenger-test-"));
  const bin = process.env.PARLEYD_BIN || join(dir, "parleyd");
  if (!process.env.PARLEYD_BIN) execFileSync("go", ["build", "-o", bin, "./server/cmd/parleyd"], { cwd: repoRoot, stdio: "inherit" });
  const child = spawn(bin, ["-addr", "127.0.0.1:0", "-db", join(dir, "parley.db"), "-send-rate", "50", "-send-burst", "200"], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const api = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`parleyd did not start:\n${log}`)), 60_000);
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      log += chunk;
      const m = /parleyd listening on (http:\/\/\S+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    child.on("exit", (code) => fail(new Error(`parleyd exited with ${code}:\n${log}`)));
  });

  const out = join(dir, "messenger");
  await build({ entryPoints: [join(webRoot, "apps/messenger/main.ts")], bundle: true, minify: true, format: "esm", target: "es2020", outfile: join(out, "main.js"), logLevel: "warning" });
  const files: Record<string, [string, string]> = {
    "/messenger/": [join(webRoot, "apps/messenger/index.html"), "text/html; charset=utf-8"],
    "/messenger/main.js": [join(out, "main.js"), "text/javascript"],
    "/messenger/style.css": [join(webRoot, "apps/messenger/style.css"), "text/css"],
  };

  const apiUrl = new URL(api);
  const sockets = new Set<Socket>();
  const proxy = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    const f = files[path];
    if (f && req.method === "GET") {
      res.writeHead(200, { "Content-Type": f[1], "Cache-Control": "no-store" });
      res.end(readFileSync(f[0]));
      return;
    }
    const up = request(
      { host: apiUrl.hostname, port: apiUrl.port, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on("error", () => res.destroy());
    res.on("close", () => up.destroy());
    req.pipe(up);
  });
  proxy.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  const port = await listen(proxy);
  const base = `http://127.0.0.1:${port}`;

  const admin = createParleyClient(api, { token: "ps_demo_admin_token" });
  const site = await admin.access.createSite({ site: { displayName: "Messenger tests", allowedOrigins: [base] } });

  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"],
  });
  return {
    base,
    siteId: site.site!.id,
    browser,
    async dropNetwork(page) {
      await page.context().setOffline(true);
      for (const s of sockets) s.destroy(); // what a dead Wi-Fi does to open streams
    },
    async restoreNetwork(page) {
      await page.context().setOffline(false);
    },
    async stop() {
      await browser.close();
      for (const s of sockets) s.destroy();
      await new Promise((done) => proxy.close(done));
      const exited = new Promise((done) => child.once("exit", done));
      child.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
