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
