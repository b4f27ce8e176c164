// What a browser app pays for the package: a minified esbuild bundle of all
// of it holds no validation runtime (protovalidate, CEL, the buf.validate
// descriptors) and stays within a size budget.
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { test } from "node:test";
import { gzipSync } from "node:zlib";

import { build } from "esbuild";

const root = resolve(import.meta.dirname, "..");

/** The budget of the whole package, minified and gzipped. */
const gzipBudget = 60 * 1024;

test("a browser bundle has no validation runtime and stays small", async (t) => {
  const result = await build({
    entryPoints: [resolve(root, "src/index.ts")],
    absWorkingDir: root,
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2020",
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  const inputs = Object.keys(result.metafile.inputs);
  assert.ok(inputs.some((p) => p.includes("@connectrpc/connect-web")), "the bundle has the transport");
  const heavy = inputs.filter((p) => /protovalidate|@bufbuild\/cel|buf\/validate/.test(p));
  assert.deepEqual(heavy, [], "no validation runtime");
  const code = result.outputFiles[0].contents;
  assert.ok(!Buffer.from(code).includes("buf.validate"), "no buf.validate descriptor");
  const gzipped = gzipSync(code, { level: 9 }).length;
  t.diagnostic(`bundle: ${(code.length / 1024).toFixed(1)} KiB minified, ${(gzipped / 1024).toFixed(1)} KiB gzipped`);
  assert.ok(gzipped < gzipBudget, `${gzipped} bytes gzipped, over the budget of ${gzipBudget}`);
});

test("an app that needs two services bundles only their descriptors", async (t) => {
  // As the messenger does: a transport, two services, the resume helper.
  const result = await build({
    stdin: {
      contents: `import { createClient, createParleyTransport, errorReason, followConversation, MessagingService, SessionService } from "./src/index.js";
const transport = createParleyTransport(location.origin, { token: () => sessionStorage.getItem("t") ?? undefined });
const client = { session: createClient(SessionService, transport), messaging: createClient(MessagingService, transport) };
export { client, errorReason, followConversation };`,
      resolveDir: root,
      loader: "ts",
    },
    absWorkingDir: root,
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2020",
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  // The files that put code in the output, not all those parsed.
  const [output] = Object.values(result.metafile.outputs);
  const inputs = Object.entries(output.inputs).flatMap(([p, i]) => (i.bytesInOutput > 0 ? [p] : []));
  assert.ok(inputs.some((p) => p.endsWith("messaging_service_pb.ts")));
  for (const unused of ["access_service_pb.ts", "knowledge_service_pb.ts", "assistant_service_pb.ts", "case_service_pb.ts"]) {
    assert.ok(!inputs.some((p) => p.endsWith(unused)), `${unused} is left out`);
  }
  const code = result.outputFiles[0].contents;
  const gzipped = gzipSync(code, { level: 9 }).length;
  t.diagnostic(`two services: ${(code.length / 1024).toFixed(1)} KiB minified, ${(gzipped / 1024).toFixed(1)} KiB gzipped`);
});
