// Starts a real parleyd for the tests: built from this repository, on a
// free port and a fresh SQLite file, with the demo bootstrap.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const repoRoot = resolve(import.meta.dirname, "../../..");

export interface Parleyd {
  baseUrl: string;
  stop(): Promise<void>;
}

/**
 * Builds and starts parleyd with the extra flags args (such as
 * ["-heartbeat", "1s"]); resolves once it prints its address.
 */
export async function startParleyd(args: string[] = []): Promise<Parleyd> {
  const dir = mkdtempSync(join(tmpdir(), "parley-web-test-"));
  const bin = join(dir, "parleyd");
  execFileSync("go", ["build", "-o", bin, "./server/cmd/parleyd"], { cwd: repoRoot, stdio: "inherit" });
  const child: ChildProcess = spawn(bin, ["-addr", "127.0.0.1:0", "-db", join(dir, "parley.db"), ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  // A test process that ends without stop() (a failure, a timeout) does
  // not leave parleyd behind.
  const orphan = () => child.kill();
  process.once("exit", orphan);
  let log = "";
  const baseUrl = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`parleyd did not start:\n${log}`)), 30_000);
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      log += chunk;
      const m = /parleyd listening on (http:\/\/\S+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`parleyd exited with ${code}:\n${log}`));
    });
  });
  return {
    baseUrl,
    async stop() {
      process.off("exit", orphan);
      const exited = new Promise((done) => child.once("exit", done));
      child.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
