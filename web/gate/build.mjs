// Builds the gate app into dist/, which is committed: `ehac-gate serve` embeds it, so cargo
// builds without npm. `node build.mjs --check` builds into memory and fails if dist/ differs
// (the test command runs it, so the committed bundle is always the sources' build).
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL(".", import.meta.url));
const dist = `${root}dist`;
const check = process.argv.includes("--check");

async function bundle(entry, define = {}) {
  const out = await build({
    entryPoints: [`${root}src/${entry}`],
    bundle: true,
    minify: true,
    format: entry === "sw.ts" ? "iife" : "esm",
    target: ["chrome100", "safari15", "firefox100"],
    legalComments: "none",
    write: false,
    define,
  });
  return out.outputFiles[0].text;
}

const files = {};
for (const name of await readdir(`${root}static`)) files[name] = await readFile(`${root}static/${name}`, "utf8");
files["app.js"] = await bundle("app.ts");
// The cache is named after the content, so a new build replaces the old files on every gate.
const version = createHash("sha256");
for (const name of Object.keys(files).sort()) version.update(name).update(files[name]);
const appFiles = ["./", ...Object.keys(files).sort()];
files["sw.js"] = await bundle("sw.ts", { APP_FILES: JSON.stringify(appFiles), APP_VERSION: JSON.stringify(version.digest("hex").slice(0, 16)) });

if (check) {
  const committed = (await readdir(dist).catch(() => [])).sort();
  const stale = Object.keys(files).sort().filter((name) => !committed.includes(name));
  for (const name of committed) {
    const text = await readFile(`${dist}/${name}`, "utf8");
    if (files[name] !== text) stale.push(name);
  }
  if (stale.length > 0) {
    console.error(`web/gate/dist is not the build of the sources (${stale.join(", ")}): run npm run build in web/gate and commit dist/`);
    process.exit(1);
  }
  console.log(`web/gate/dist matches a fresh build (${committed.length} files)`);
} else {
  await rm(dist, { recursive: true, force: true });
  await mkdir(dist);
  for (const [name, text] of Object.entries(files)) await writeFile(`${dist}/${name}`, text);
  console.log(`built ${Object.keys(files).length} files into dist/ (${Object.values(files).reduce((n, t) => n + t.length, 0)} bytes)`);
}
