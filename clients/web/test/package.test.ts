// The package as npm users get it: packed with `npm pack` (which builds
// it), installed from the tarball into an empty project whose dependencies
// npm resolves from the declared ranges, imported by plain Node (no tsx, no
// TypeScript) to make real calls, and type-checked as a consumer would.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";

import { startParleyd, type Parleyd } from "./parleyd.js";

const root = resolve(import.meta.dirname, "..");
let parleyd: Parleyd;
let dir: string;

before(async () => {
  parleyd = await startParleyd();
  dir = mkdtempSync(join(tmpdir(), "parley-web-pack-"));
});

after(async () => {
  await parleyd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs npm with args in cwd and returns its standard output. */
function npm(args: string[], cwd: string): string {
  return execFileSync("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], { cwd, encoding: "utf8" });
}

test("the packed package installs and works in plain Node", async () => {
  const packed = JSON.parse(npm(["pack", "--json", "--pack-destination", dir], root)) as {
    filename: string;
    files: { path: string }[];
  }[];
  const files = packed[0].files.map((f) => f.path).sort();
  for (const want of ["README.md", "package.json", "dist/index.js", "dist/index.d.ts", "dist/resume.js", "dist/gen/parley/v1/access_service_pb.js"]) {
    assert.ok(files.includes(want), `the tarball has ${want}`);
  }
  assert.deepEqual(files.filter((f) => !f.startsWith("dist/") && f !== "README.md" && f !== "package.json"), []);
  assert.ok(!files.some((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")), "no TypeScript sources");

  const app = join(dir, "app");
  execFileSync("mkdir", [app]);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  npm(["install", "--prefer-offline", join(dir, packed[0].filename)], app);

  // Plain Node: the ESM build, its imports and the installed dependencies.
  writeFileSync(
    join(app, "main.mjs"),
    `import { createParleyClient, errorReason, isRetryable, followConversation } from "@parleyhq/parley-web";
const client = createParleyClient(process.argv[2], { protocol: "grpc-web" });
const form = await client.session.getPreChatForm({});
let reason;
try {
  await client.access.listTokens({});
} catch (err) {
  reason = errorReason(err);
}
console.log(JSON.stringify({ issueTypes: form.issueTypes.map((t) => t.value), reason, retryable: isRetryable(new Error("x")), follow: typeof followConversation }));
`,
  );
  const out = JSON.parse(execFileSync("node", ["main.mjs", parleyd.baseUrl], { cwd: app, encoding: "utf8" }));
  assert.deepEqual(out, { issueTypes: ["billing", "order", "product"], reason: "MISSING_TOKEN", retryable: false, follow: "function" });

  // A TypeScript consumer resolves the declarations through "exports".
  writeFileSync(
    join(app, "consumer.ts"),
    `import { createParleyClient, followConversation, type SubscribeResponse } from "@parleyhq/parley-web";
const client = createParleyClient("http://localhost:8080", { token: async () => "t" });
export async function first(id: string): Promise<SubscribeResponse | undefined> {
  for await (const item of followConversation(client, id, 0)) return item;
  return undefined;
}
`,
  );
  execFileSync(
    join(root, "node_modules/.bin/tsc"),
    ["--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--lib", "es2022,dom", "consumer.ts"],
    { cwd: app, encoding: "utf8" },
  );
});
