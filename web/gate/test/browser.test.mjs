// The gate app in a real browser, as an officer uses it: Debian's Chromium (playwright-core,
// never a downloaded browser) loads the app from `ehac-gate serve`, loses the network, and
// judges what its fake camera shows (a Y4M made from `ehac-gate pass qr`) and what is typed in.
// Also runs every shared vector inside Chromium. Prints ms per verification and per camera frame.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { deflate, inflate } from "pako";
import { PNG } from "pngjs";
import { ROOT, VECTORS } from "./support.mjs";

const REPO = join(ROOT, "../..");
const BIN = process.env.EHAC_GATE_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(REPO, "target"), "debug/ehac-gate");
const CHROMIUM = process.env.EHAC_CHROMIUM ?? "/usr/bin/chromium";
const SCREENSHOTS = process.env.EHAC_UPDATE_SCREENSHOTS ? join(REPO, "docs") : null;
const HOUR = 3_600_000;

function gate(dir, ...args) {
  return execFileSync(BIN, args, { cwd: dir, encoding: "utf8" }).trim();
}

/** `ehac-gate serve` on a free port (or the given one); resolves once it prints its address. */
async function serve(dir, port = 0) {
  const child = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--trust-list", join(dir, "published.cose")], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  for await (const chunk of child.stdout) {
    out += chunk;
    const match = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
    if (match) return { child, port: Number(match[1]) };
  }
  throw new Error(`ehac-gate serve exited: ${out}`);
}

async function stop(server) {
  if (server.child.exitCode !== null) return;
  server.child.kill("SIGTERM");
  await once(server.child, "exit");
}

/** The QR PNG centred on a white 640x480 frame, as a one-frame Y4M (4:2:0, grey). */
function y4mFromPng(png) {
  const image = PNG.sync.read(readFileSync(png));
  const [width, height, side] = [640, 480, 440];
  const luma = new Uint8Array(width * height).fill(255);
  const [left, top] = [(width - side) / 2, (height - side) / 2];
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const sx = Math.floor((x * image.width) / side);
      const sy = Math.floor((y * image.height) / side);
      luma[(top + y) * width + left + x] = image.data[(sy * image.width + sx) * 4];
    }
  }
  const chroma = new Uint8Array((width / 2) * (height / 2)).fill(128);
  return Buffer.concat([Buffer.from(`YUV4MPEG2 W${width} H${height} F10:1 Ip A1:1 C420jpeg\nFRAME\n`), luma, chroma, chroma]);
}

// Base45 (RFC 9285), to bend a pass the way a forger would.
const B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
function base45(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length; i += 2) {
    if (i + 1 < bytes.length) {
      let n = bytes[i] * 256 + bytes[i + 1];
      for (let k = 0; k < 3; k++, n = Math.floor(n / 45)) out += B45[n % 45];
    } else {
      out += B45[bytes[i] % 45] + B45[Math.floor(bytes[i] / 45)];
    }
  }
  return out;
}
function unbase45(text) {
  const out = [];
  for (let i = 0; i < text.length; i += 3) {
    const [c, d, e] = [...text.slice(i, i + 3)].map((ch) => B45.indexOf(ch));
    if (e === undefined) out.push(c + d * 45);
    else {
      const n = c + d * 45 + e * 2025;
      out.push(n >> 8, n & 0xff);
    }
  }
  return Uint8Array.from(out);
}

/** The pass with one letter of the traveller's name changed, re-packed: the signature no longer fits. */
function tamper(pass, name) {
  const cose = inflate(unbase45(pass.slice(4)));
  const at = Buffer.from(cose).indexOf(Buffer.from(name));
  cose[at] = "X".charCodeAt(0);
  return `EH1:${base45(deflate(cose))}`;
}

async function verdict(page, expected, reason) {
  const selector = `#verdict[data-verdict="${expected}"]${reason ? `[data-reason="${reason}"]` : ""}:not([hidden])`;
  await page.waitForSelector(selector, { timeout: 20_000 });
  return page.locator("#verdict").innerText();
}

async function dismiss(page) {
  await page.locator("#verdict").click();
  await page.waitForSelector("#verdict[hidden]", { state: "attached" });
}

async function typePass(page, pass) {
  await page.locator("#manual-pass").fill(pass);
  await page.locator("#manual button[type=submit]").click();
}

async function tally(page) {
  const [accept, reject, degraded] = (await page.locator("#tally").innerText()).match(/\d+/g).map(Number);
  return { accept, reject, degraded };
}

async function screenshot(page, dir, name) {
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(SCREENSHOTS ?? dir, name) });
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
};

test("an officer's gate in Chromium: offline camera ACCEPT, REJECTs, DEGRADED, then a newer list installed and an older one refused", { timeout: 180_000 }, async () => {
  assert.ok(existsSync(BIN), `${BIN} is missing: cargo build -p ehac-gate first (or set EHAC_GATE_BIN)`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (deploy/local/install.sh does)`);
  const dir = mkdtempSync(join(tmpdir(), "ehac-gate-app-"));
  let server, browser;
  try {
    const rootCreated = gate(dir, "keys", "root", "--out", ".");
    gate(dir, "keys", "issuing", "--region", "ID-JK", "--out", ".");
    const issuingPublic = readdirSync(dir).find((f) => f.endsWith(".pub.json"));
    const issuingKey = issuingPublic.replace(".pub.json", ".key.json");
    const list = ["--trust-list", "tl.cose", "--root-key", "root.key.pem"];
    gate(dir, "trust-list", "build", ...list);
    gate(dir, "trust-list", "add-key", ...list, "--key", issuingPublic);
    // Arriving in twelve hours: the passes stay valid past the trust list's 24-hour max age.
    const arrival = new Date(Date.now() + 12 * HOUR).toISOString().replace(/\.\d+Z$/, "Z");
    const issue = (name, airport) =>
      gate(dir, "pass", "issue", "--key", issuingKey, "--name", name, "--dob", "1988-03-14", "--flight", "GA404", "--airport", airport, "--arrival", arrival, "--triage", "yellow");
    const accepted = issue("Siti Nurhaliza binti Abdullah", "CGK");
    const revoked = issue("Budi Santoso", "CGK");
    const elsewhere = issue("Wayan Sudarsana", "DPS");
    gate(dir, "trust-list", "revoke", ...list, "--pass", revoked);
    copyFileSync(join(dir, "tl.cose"), join(dir, "published.cose"));
    const installedVersion = 3;
    gate(dir, "pass", "qr", "--png", "accepted.png", accepted);
    writeFileSync(join(dir, "camera.y4m"), y4mFromPng(join(dir, "accepted.png")));

    server = await serve(dir);
    const origin = `http://127.0.0.1:${server.port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        `--use-file-for-fake-video-capture=${join(dir, "camera.y4m")}`,
      ],
    });
    const context = await browser.newContext({ viewport: { width: 600, height: 900 } });
    await context.grantPermissions(["camera"], { origin });
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    // Everything the app asks of the network, to show that no pass goes anywhere.
    const requests = [];
    context.on("request", (request) => requests.push({ method: request.method(), url: request.url() }));

    // Set up once, online: airport, pinned root, the list from the server.
    await page.goto(origin);
    await page.locator("input[name=airport]").fill("cgk");
    await page.locator("textarea[name=roots]").fill(readFileSync(join(dir, "root.pub.pem"), "utf8"));
    await page.locator("#setup button[type=submit]").click();
    await page.waitForSelector(`#list-status:text("v${installedVersion}")`);
    const rootKid = /root key ([0-9a-f]{16})/.exec(rootCreated)[1];
    assert.match(await page.locator("#pinned").innerText(), new RegExp(rootKid), "the pinned root's kid is shown");
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));

    // The network goes away: the browser is offline and the server is stopped.
    await context.setOffline(true);
    await stop(server);
    await page.reload();
    assert.equal(await page.evaluate(() => navigator.serviceWorker.controller !== null), true, "the page comes from the service worker");
    const accept = await verdict(page, "ACCEPT");
    assert.match(accept, /Siti Nurhaliza binti Abdullah/);
    assert.match(accept, /GA404/);
    assert.match(accept, /1988-03-14/);
    assert.match(accept, /CGK/);
    await screenshot(page, dir, "gate-accept.png");
    await dismiss(page);
    // The shift's tally so far (the camera may already have judged the pass once while online).
    const before = await tally(page);
    assert.ok(before.accept >= 1, "the camera's ACCEPT is counted");

    await typePass(page, revoked);
    assert.match(await verdict(page, "REJECT", "revoked"), /Pas dicabut/);
    await screenshot(page, dir, "gate-reject.png");
    await dismiss(page);
    await typePass(page, elsewhere);
    assert.match(await verdict(page, "REJECT", "wrong_airport"), /another airport/);
    await dismiss(page);
    // The scanning screen, with the field for manual entry in use (scanning paused).
    await page.locator("#manual-pass").focus();
    await screenshot(page, dir, "gate-scan.png");
    await typePass(page, tamper(accepted, "Siti"));
    await verdict(page, "REJECT", "bad_signature");
    await dismiss(page);

    // Thirty hours later with no network: the list is past its 24-hour max age.
    await page.clock.setFixedTime(new Date(Date.now() + 30 * HOUR));
    await typePass(page, accepted);
    assert.match(await verdict(page, "DEGRADED", "stale_trust_list"), /Siti Nurhaliza binti Abdullah/);
    await screenshot(page, dir, "gate-degraded.png");
    await dismiss(page);
    await page.clock.setFixedTime(new Date());
    assert.deepEqual(await tally(page), { accept: before.accept, reject: before.reject + 3, degraded: before.degraded + 1 });
    const stats = await page.evaluate(() => globalThis.gateStats);

    // Back online: a newer list is installed; then an older one offered is refused.
    const older = readFileSync(join(dir, "published.cose"));
    gate(dir, "trust-list", "revoke", ...list, "--pass", elsewhere);
    copyFileSync(join(dir, "tl.cose"), join(dir, "published.cose"));
    server = await serve(dir, server.port);
    // The app fetches as soon as the browser says it is online again.
    await context.setOffline(false);
    await page.waitForSelector(`#notice:text("Trust list v${installedVersion + 1} installed")`);
    assert.match(await page.locator("#list-status").innerText(), new RegExp(`v${installedVersion + 1}`));
    writeFileSync(join(dir, "published.cose"), older);
    await page.reload();
    await page.waitForSelector('#notice:text("Older trust list refused")');
    assert.match(await page.locator("#list-status").innerText(), new RegExp(`v${installedVersion + 1}`));

    assert.deepEqual(errors, []);
    const appFiles = ["/", ...readdirSync(join(ROOT, "dist")).map((f) => `/${f}`), "/trust-list.cose"];
    const unexpected = requests.filter((r) => r.method !== "GET" || !r.url.startsWith(origin) || !appFiles.includes(new URL(r.url).pathname));
    assert.deepEqual(unexpected, [], "the app fetches its own files and the trust list, nothing else");
    assert.ok(requests.every((r) => !r.url.includes("EH1")), "no pass in any request");
    assert.ok(requests.some((r) => r.url === `${origin}/trust-list.cose`), "the requests were recorded");

    // Every shared vector inside Chromium.
    // On a page of its own (a fresh context, no service worker) at a localhost address, which
    // the browser treats as a secure context, as WebCrypto requires.
    const vectorsContext = await browser.newContext();
    await vectorsContext.route(`${origin}/vectors.html`, (route) => route.fulfill({ contentType: "text/html", body: "<!doctype html><title>vectors</title>" }));
    const vectorsPage = await vectorsContext.newPage();
    await vectorsPage.goto(`${origin}/vectors.html`);
    const bundle = await build({
      stdin: { contents: `import * as core from "./src/core.ts"; import { runVectors } from "./test/vectors.mjs"; globalThis.gateVectors = (v) => runVectors(core, v);`, resolveDir: ROOT },
      bundle: true, format: "iife", write: false,
    });
    await vectorsPage.addScriptTag({ content: bundle.outputFiles[0].text });
    const result = await vectorsPage.evaluate((v) => globalThis.gateVectors(v), JSON.parse(readFileSync(VECTORS, "utf8")));
    assert.deepEqual(result.failures, []);

    console.log(
      `Chromium: ${result.passes} pass vectors and ${result.updates} trust-list updates agree with ehac_pass, ${(result.verifyMs / result.passes).toFixed(3)} ms per verification over the vectors; ` +
        `in the app ${median(stats.verifyMs).toFixed(2)} ms per verification (median of ${stats.verifyMs.length}), ` +
        `${median(stats.frameMs).toFixed(2)} ms per camera frame read and decoded (median of ${stats.frames} frames, 640x480)`,
    );
  } finally {
    await browser?.close();
    if (server) await stop(server);
    rmSync(dir, { recursive: true, force: true });
  }
});
