// Builds the web apps that parleyd embeds (server/internal/webapps/dist/):
//
//   apps/<app>/main.ts    -> dist/<app>/main.js    (ESM, minified, es2020)
//   apps/<app>/style.css  -> dist/<app>/style.css  (minified)
//   apps/<app>/index.html -> dist/<app>/index.html (copied)
//   apps/loader/loader.ts -> dist/messenger.js     (IIFE, minified: the script host sites paste)
//
// An app directory without main.ts is skipped (not built yet). The output is
// deterministic (no source maps, no timestamps, sorted inputs) and committed;
// CI runs `npm run build:apps` and fails if dist/ differs from the commit.
// Usage: node build.mjs (npm run build:apps); it prints each output's size.
import { build } from "esbuild";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const apps = join(here, "apps");
const dist = join(here, "../../server/internal/webapps/dist");

const common = {
  bundle: true,
  minify: true,
  target: "es2020",
  sourcemap: false,
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
  write: true,
};

/** Rebuilds dist/ from scratch, so a removed app leaves no stale files. */
async function main() {
  rmSync(dist, { recursive: true, force: true });
  mkdirSync(dist, { recursive: true });
  const outputs = [];

  const names = readdirSync(apps, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(apps, d.name, "main.ts")))
    .map((d) => d.name)
    .sort();
  for (const name of names) {
    const src = join(apps, name);
    const out = join(dist, name);
    mkdirSync(out, { recursive: true });
    await build({ ...common, entryPoints: [join(src, "main.ts")], outfile: join(out, "main.js"), format: "esm" });
    outputs.push(join(out, "main.js"));
    if (existsSync(join(src, "style.css"))) {
      await build({ ...common, entryPoints: [join(src, "style.css")], outfile: join(out, "style.css"), loader: { ".css": "css" } });
      outputs.push(join(out, "style.css"));
    }
    if (existsSync(join(src, "index.html"))) {
      copyFileSync(join(src, "index.html"), join(out, "index.html"));
      outputs.push(join(out, "index.html"));
    }
  }

  const loader = join(apps, "loader", "loader.ts");
  if (existsSync(loader)) {
    await build({ ...common, entryPoints: [loader], outfile: join(dist, "messenger.js"), format: "iife" });
    outputs.push(join(dist, "messenger.js"));
  }

  for (const file of outputs.sort()) {
    const body = readFileSync(file);
    const gz = gzipSync(body, { level: 9 }).length;
    console.log(`${relative(dist, file).padEnd(28)} ${kb(body.length).padStart(9)} min ${kb(gz).padStart(9)} min+gzip`);
  }
}

function kb(n) {
  return `${(n / 1024).toFixed(2)} KB`;
}

await main();
