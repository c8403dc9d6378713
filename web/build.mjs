// Builds the client into dist/ (index.html, app.js, app.css, favicon.svg), or with --tests the test files into
// .test-build/ for `node --test`. The output depends only on the sources and the locked packages,
// so `npm ci && npm run build` reproduces the committed dist/ byte for byte.

import { build } from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";

const tests = process.argv.includes("--tests");

if (tests) {
  rmSync(".test-build", { recursive: true, force: true });
  const entries = readdirSync("test").filter((f) => f.endsWith(".test.ts")).map((f) => `test/${f}`);
  await build({
    entryPoints: entries,
    outdir: ".test-build",
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    outExtension: { ".js": ".mjs" },
    logLevel: "warning",
  });
} else {
  rmSync("dist", { recursive: true, force: true });
  mkdirSync("dist");
  await build({
    entryPoints: { app: "src/main.ts" },
    outdir: "dist",
    bundle: true,
    minify: true,
    format: "esm",
    target: ["chrome120", "firefox120", "safari17"],
    legalComments: "none",
    charset: "utf8",
    logLevel: "warning",
  });
  copyFileSync("static/index.html", "dist/index.html");
  copyFileSync("static/app.css", "dist/app.css");
  copyFileSync("static/favicon.svg", "dist/favicon.svg");
}
