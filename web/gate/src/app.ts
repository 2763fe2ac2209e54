// The gate officer's scanner: the camera reads the pass QR, the pass is verified on the device
// against the installed trust list, and the verdict fills the screen. Nothing scanned leaves the
// device: the only request the app makes is for the signed trust list.

import jsQR from "jsqr";
import { verify, type Verdict, type RejectReason, type DegradedReason } from "./verify";
import { GateTrustList, TrustError, parseRootPem, type RootKey } from "./trust";
import { get, put, type GateConfig, type Tally } from "./store";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const REASONS: Record<RejectReason | DegradedReason, [string, string]> = {
  too_long: ["Kode terlalu panjang", "Code too long"],
  bad_prefix: ["Bukan pas e-HAC", "Not an e-HAC pass"],
  bad_base45: ["Kode rusak", "Damaged code (Base45)"],
  bad_compression: ["Kode rusak", "Damaged code (compression)"],
  too_large: ["Kode terlalu besar", "Code too large"],
  bad_cbor: ["Format pas salah", "Malformed pass"],
  algorithm_not_allowed: ["Tanda tangan tidak diizinkan", "Signature algorithm not allowed"],
  kid_unprotected: ["Kunci tidak terlindungi", "Key id not protected"],
  kid_missing: ["Kunci tidak ada", "Key id missing"],
  unknown_kid: ["Penerbit tidak dikenal", "Unknown issuer key"],
  key_not_valid: ["Kunci penerbit tidak berlaku", "Issuer key not valid now"],
  bad_signature_format: ["Tanda tangan rusak", "Malformed signature"],
  bad_signature: ["Tanda tangan tidak sah (pas diubah)", "Invalid signature (pass altered)"],
  bad_claims: ["Isi pas tidak sah", "Invalid pass content"],
  wrong_issuer: ["Wilayah penerbit salah", "Wrong issuing region"],
  not_yet_valid: ["Pas belum berlaku", "Pass not yet valid"],
  expired: ["Pas kedaluwarsa", "Pass expired"],
  revoked: ["Pas dicabut", "Pass revoked"],
  wrong_airport: ["Bandara tujuan lain", "Pass is for another airport"],
  unknown_kid_stale_trust_list: ["Penerbit tidak dikenal, daftar kepercayaan kedaluwarsa: periksa manual", "Unknown issuer, trust list out of date: check manually"],
  stale_trust_list: ["Daftar kepercayaan kedaluwarsa: periksa manual", "Trust list out of date: check manually"],
};

const TRIAGE = { green: ["HIJAU", "green"], yellow: ["KUNING", "yellow"], red: ["MERAH", "red"] } as const;

/** How long a verdict stays on screen before scanning resumes by itself, ms. */
const SHOW_MS = { ACCEPT: 4000, REJECT: 7000, DEGRADED: 7000 } as const;
/**
 * A code the camera keeps seeing is the same traveller still holding it up: it is judged once,
 * and again only after it was out of sight this long.
 */
const OUT_OF_SIGHT_MS = 3000;
/** How often the gate asks for a newer trust list while it has network. */
const REFRESH_MS = 5 * 60 * 1000;

interface Gate {
  config: GateConfig;
  roots: RootKey[];
  list: GateTrustList | null;
}

/** Timings the Chromium test reads: verification and QR decoding per camera frame, ms. */
const stats = { verifyMs: [] as number[], frameMs: [] as number[], frames: 0, lastVerdict: null as Verdict | null };
(globalThis as unknown as { gateStats: typeof stats }).gateStats = stats;

let gate: Gate | null = null;
let showing = false;
/** A verification under way (WebCrypto is asynchronous): nothing else is judged meanwhile. */
let busy = false;
/** Codes the camera saw, with when it last saw each. */
const seen = new Map<string, number>();

function bilingual(element: HTMLElement, [id, en]: readonly [string, string]) {
  element.replaceChildren(id, " ", Object.assign(document.createElement("small"), { textContent: en }));
}

function notice(text: string) {
  $("notice").textContent = text;
}

async function start() {
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("sw.js").catch((e) => notice(`Service worker: ${e}`));
  }
  const config = await get<GateConfig>("config");
  if (!config) return showSetup();
  await openGate(config);
}

function showSetup(error = "") {
  $("setup").hidden = false;
  $("scan").hidden = true;
  $("setup-error").textContent = error;
  if (gate) {
    const form = $<HTMLFormElement>("setup-form");
    (form.elements.namedItem("airport") as HTMLInputElement).value = gate.config.airport;
    (form.elements.namedItem("roots") as HTMLTextAreaElement).value = gate.config.roots.join("\n");
    (form.elements.namedItem("url") as HTMLInputElement).value = gate.config.trustListUrl;
  }
}

$("setup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target as HTMLFormElement);
  const pems = String(form.get("roots")).match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g) ?? [];
  const config: GateConfig = { airport: String(form.get("airport")).trim().toUpperCase(), roots: pems, trustListUrl: String(form.get("url")).trim() };
  try {
    if (pems.length === 0) throw new Error("no PEM public key");
    await Promise.all(pems.map(parseRootPem));
  } catch (e) {
    return showSetup(`Kunci root tidak sah / Invalid root key: ${e}`);
  }
  await put("config", config);
  await openGate(config);
});

async function openGate(config: GateConfig) {
  const roots = await Promise.all(config.roots.map(parseRootPem));
  let list: GateTrustList | null = null;
  const stored = await get<Uint8Array>("trustList");
  if (stored) {
    try {
      list = await GateTrustList.load(stored, roots);
    } catch (e) {
      notice(`Daftar tersimpan ditolak / Stored trust list refused: ${e}`);
    }
  }
  const first = gate === null;
  gate = { config, roots, list };
  $("setup").hidden = true;
  $("scan").hidden = false;
  $("airport-badge").textContent = config.airport;
  // To check against the kid written down with the root key.
  $("pinned").textContent = `Root kid: ${roots.map((r) => r.kid).join(", ")}`;
  await renderTally();
  renderListStatus();
  await refreshTrustList();
  if (first) {
    // Once per page: setting the gate up again only changes what these use.
    setInterval(refreshTrustList, REFRESH_MS);
    setInterval(renderListStatus, 30_000);
    void startCamera();
  }
}

/** Fetches the list from the configured URL and installs it only if it is newer. */
async function refreshTrustList() {
  if (!gate) return;
  let bytes: Uint8Array;
  try {
    const response = await fetch(gate.config.trustListUrl, { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    bytes = new Uint8Array(await response.arrayBuffer());
  } catch {
    renderListStatus();
    return; // offline: keep the installed list
  }
  try {
    const list = gate.list ? await gate.list.update(bytes, gate.roots) : await GateTrustList.load(bytes, gate.roots);
    await put("trustList", bytes);
    gate.list = list;
    notice(`Daftar kepercayaan v${list.info.version} dipasang / Trust list v${list.info.version} installed`);
  } catch (e) {
    if (e instanceof TrustError && e.code === "not_newer") {
      // The usual case: nothing new published.
    } else if (e instanceof TrustError && e.code === "rollback") {
      notice(`Daftar lama ditolak / Older trust list refused (${e.message})`);
    } else {
      notice(`Daftar ditolak / Trust list refused: ${e}`);
    }
  }
  renderListStatus();
}

function renderListStatus() {
  const status = $("list-status");
  const list = gate?.list;
  if (!list) {
    status.textContent = "Tidak ada daftar kepercayaan / No trust list";
    status.className = "stale";
    return;
  }
  const hours = Math.floor((Date.now() - list.info.issued) / 3_600_000);
  const stale = list.isStale(Date.now());
  status.textContent = `v${list.info.version} · ${hours} j/h${stale ? " · KEDALUWARSA / STALE" : ""}`;
  status.className = stale ? "stale" : "";
}

async function tally(): Promise<Tally> {
  return (await get<Tally>("tally")) ?? { shiftStarted: Date.now(), accept: 0, reject: 0, degraded: 0 };
}

async function renderTally() {
  const t = await tally();
  $("tally").textContent = `✔ ${t.accept} · ✖ ${t.reject} · ! ${t.degraded}`;
}

async function count(verdict: Verdict) {
  const t = await tally();
  if (verdict.verdict === "ACCEPT") t.accept++;
  else if (verdict.verdict === "REJECT") t.reject++;
  else t.degraded++;
  await put("tally", t);
  await renderTally();
}

$("new-shift").addEventListener("click", async () => {
  await put("tally", { shiftStarted: Date.now(), accept: 0, reject: 0, degraded: 0 });
  await renderTally();
});
$("reconfigure").addEventListener("click", () => showSetup());

async function judge(text: string) {
  if (!gate || showing || busy) return;
  if (!gate.list) {
    notice("Belum ada daftar kepercayaan: sambungkan ke jaringan gerbang / No trust list yet: connect to the gate network");
    return;
  }
  busy = true;
  try {
    const started = performance.now();
    const verdict = await verify(text, gate.list, gate.config.airport, Date.now());
    stats.verifyMs.push(performance.now() - started);
    stats.lastVerdict = verdict;
    show(verdict);
    await count(verdict);
  } finally {
    busy = false;
  }
}

function row(list: HTMLElement, label: readonly [string, string], value: string | Node, className = "") {
  const dt = document.createElement("dt");
  bilingual(dt, label);
  const dd = document.createElement("dd");
  dd.className = className;
  dd.append(value);
  list.append(dt, dd);
}

function show(verdict: Verdict) {
  showing = true;
  const section = $("verdict");
  const list = $("verdict-view");
  list.replaceChildren();
  section.className = verdict.verdict.toLowerCase();
  section.dataset.verdict = verdict.verdict;
  section.dataset.reason = verdict.verdict === "ACCEPT" ? "" : verdict.reason;
  const titles = { ACCEPT: ["DITERIMA", "ACCEPT"], REJECT: ["DITOLAK", "REJECT"], DEGRADED: ["PERIKSA MANUAL", "DEGRADED"] } as const;
  bilingual($("verdict-title"), titles[verdict.verdict]);
  const reason = $("verdict-reason");
  if (verdict.verdict === "ACCEPT") reason.replaceChildren();
  else bilingual(reason, REASONS[verdict.reason]);
  const view = verdict.verdict === "ACCEPT" ? verdict : verdict.verdict === "DEGRADED" ? verdict.view : null;
  if (view) {
    row(list, ["Nama", "Name"], view.traveller_name, "name");
    row(list, ["Tanggal lahir", "Date of birth"], view.date_of_birth);
    row(list, ["Penerbangan", "Flight"], view.flight);
    row(list, ["Tiba di", "Arrival"], `${view.arrival_airport} · ${view.arrival_date}`);
    const triage = Object.assign(document.createElement("span"), { className: `triage ${view.triage}`, textContent: TRIAGE[view.triage].join(" / ") });
    row(list, ["Triase", "Triage"], triage);
  }
  section.hidden = false;
  section.focus();
  setTimeout(dismiss, SHOW_MS[verdict.verdict]);
}

function dismiss() {
  if (!showing) return;
  showing = false;
  $("verdict").hidden = true;
  $("manual-pass").blur();
}

$("verdict").addEventListener("click", dismiss);

$("manual").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $<HTMLTextAreaElement>("manual-pass");
  // A pasted pass often brings a line break or spaces along; the pass itself has none.
  const text = input.value.trim();
  input.value = "";
  if (text) await judge(text);
});

async function startCamera() {
  const video = $<HTMLVideoElement>("video");
  const status = $("camera-status");
  if (!navigator.mediaDevices?.getUserMedia) {
    bilingual(status, ["Kamera perlu HTTPS: gunakan masukan manual", "The camera needs HTTPS: use manual entry"]);
    return;
  }
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment", width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false });
    await video.play();
  } catch (e) {
    bilingual(status, ["Kamera tidak tersedia: gunakan masukan manual", `Camera unavailable (${e}): use manual entry`]);
    return;
  }
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true })!;
  const manual = $<HTMLTextAreaElement>("manual-pass");
  const scan = () => {
    // Paused while the officer types a pass by hand.
    const typing = document.activeElement === manual || manual.value !== "";
    if (!typing && video.readyState >= video.HAVE_CURRENT_DATA && video.videoWidth > 0) {
      // Decode at most 640 pixels wide: plenty for a pass held up to the camera, and the
      // decoder's cost grows with the pixel count.
      const scale = Math.min(1, 640 / video.videoWidth);
      canvas.width = Math.round(video.videoWidth * scale);
      canvas.height = Math.round(video.videoHeight * scale);
      const started = performance.now();
      context.drawImage(video, 0, 0, canvas.width, canvas.height);
      const image = context.getImageData(0, 0, canvas.width, canvas.height);
      const code = jsQR(image.data, image.width, image.height, { inversionAttempts: "dontInvert" });
      stats.frameMs.push(performance.now() - started);
      stats.frames++;
      if (code?.data) {
        const now = performance.now();
        const last = seen.get(code.data);
        // Frames keep being read while a verdict shows, so a pass still held up is not
        // judged a second time when the screen returns to scanning; a new one waits its turn.
        if (last !== undefined && now - last <= OUT_OF_SIGHT_MS) {
          seen.set(code.data, now);
        } else if (!showing && !busy) {
          seen.set(code.data, now);
          void judge(code.data);
        }
      }
      if (seen.size > 64) seen.clear();
    }
    setTimeout(scan, 100);
  };
  scan();
}

addEventListener("online", refreshTrustList);
void start();
