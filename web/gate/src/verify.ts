// The gate verifier, as crates/ehac-pass does it (docs/PASS.md): the same checks in the same
// order with the same reason codes, so a pass gets the same verdict on the officer's phone as
// from `ehac-gate verify`. The shared vectors (crates/ehac-pass/tests/vectors.json) hold the two
// to it. Pure apart from WebCrypto: no network, no storage.

import { Z_BUF_ERROR, Z_FINISH, Z_OK, Z_STREAM_END, ZStream, zlibInflate, zlibInflateEnd, zlibInflateInit } from "pako";
import { byteString, CborError, concat, decode, type Item } from "./cbor";
import type { GateTrustList, TrustedKey } from "./trust";
import { ALGORITHMS, COAP_CONTENT_FORMATS, HEADER_PARAMETERS, PRIVATE_USE_MAX } from "./iana";

export const PREFIX = "EH1:";
/** The most a QR version 40 at level Q holds. */
export const MAX_PASS_CHARS = 2420;
/** The most a pass may inflate to. */
export const MAX_COSE_BYTES = 4096;
/** How far the gate's clock and the gateway's may disagree, seconds. */
export const CLOCK_TOLERANCE_SECS = 300;
const EHAC_CLAIM = -65537n;
const ES256 = -7n;

export type RejectReason =
  | "too_long" | "bad_prefix" | "bad_base45" | "bad_compression" | "too_large" | "bad_cbor"
  | "algorithm_not_allowed" | "kid_unprotected" | "kid_missing" | "unknown_kid" | "key_not_valid"
  | "bad_signature_format" | "bad_signature" | "bad_claims" | "wrong_issuer" | "not_yet_valid"
  | "expired" | "revoked" | "wrong_airport";
export type DegradedReason = "unknown_kid_stale_trust_list" | "stale_trust_list";

export interface OfficerView {
  traveller_name: string;
  date_of_birth: string;
  flight: string;
  arrival_airport: string;
  arrival_date: string;
  triage: "green" | "yellow" | "red";
  pass_id: string;
  issuer: string;
  expires_at: string;
}

/** The JSON shape of ehac_pass::Verdict. */
export type Verdict =
  | ({ verdict: "ACCEPT" } & OfficerView)
  | { verdict: "REJECT"; reason: RejectReason }
  | { verdict: "DEGRADED"; reason: DegradedReason; view: OfficerView | null };

class Refused extends Error {
  constructor(readonly reason: RejectReason) {
    super(reason);
  }
}

const utf8 = new TextEncoder();
const BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
const BASE45_VALUE = new Map([...BASE45].map((c, i) => [c, i]));

/** Strict Base45 (RFC 9285): the alphabet only, no dangling character, every group in range. */
export function unbase45(text: string): Uint8Array | null {
  if (text.length % 3 === 1) return null;
  const out = new Uint8Array(Math.floor(text.length / 3) * 2 + (text.length % 3 === 2 ? 1 : 0));
  let o = 0;
  for (let i = 0; i < text.length; i += 3) {
    const group = [...text.slice(i, i + 3)].map((c) => BASE45_VALUE.get(c));
    if (group.some((v) => v === undefined)) return null;
    const [c, d, e = 0] = group as number[];
    const value = c! + d! * 45 + e * 45 * 45;
    if (group.length === 3) {
      if (value > 0xffff) return null;
      out[o++] = value >> 8;
      out[o++] = value & 0xff;
    } else {
      if (value > 0xff) return null;
      out[o++] = value;
    }
  }
  return out;
}

/**
 * Strict zlib: one complete stream with its checksum, nothing after it, at most `cap` bytes
 * out. The output buffer is `cap + 1` bytes and never grows, so a bomb stops there.
 */
export function unzlib(bytes: Uint8Array, cap: number): Uint8Array | "corrupt" | "too_large" {
  const stream = new ZStream();
  if (zlibInflateInit(stream) !== Z_OK) return "corrupt";
  stream.input = bytes;
  stream.next_in = 0;
  stream.avail_in = bytes.length;
  stream.output = new Uint8Array(cap + 1);
  stream.next_out = 0;
  stream.avail_out = cap + 1;
  let status: number;
  try {
    status = zlibInflate(stream, Z_FINISH);
  } finally {
    zlibInflateEnd(stream);
  }
  const produced = stream.next_out;
  if (status === Z_STREAM_END && produced <= cap) {
    return stream.avail_in === 0 ? stream.output.subarray(0, produced) : "corrupt";
  }
  if (produced > cap || (status === Z_BUF_ERROR && stream.avail_out === 0)) return "too_large";
  return "corrupt";
}

interface Header {
  alg?: Item;
  kid?: Uint8Array;
}

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/** An int label or value as coset takes it: it must fit an i64. */
function i64(item: Item): bigint | null {
  return item.t === "int" && item.v >= I64_MIN && item.v <= I64_MAX ? item.v : null;
}

/** A registered number, a private-use one, or text (coset's RegisteredLabelWithPrivate). */
function registeredOrPrivate(item: Item, registry: Set<bigint>): boolean {
  if (item.t === "text") return true;
  const n = i64(item);
  return n !== null && (registry.has(n) || n < PRIVATE_USE_MAX);
}

function nonEmptyBytes(item: Item): Uint8Array {
  if (item.t !== "bytes" || item.v.length === 0) throw new CborError("expected a non-empty byte string");
  return item.v;
}

/** A COSE_Signature inside a counter signature: [protected bstr, unprotected map, signature bstr]. */
function counterSignature(item: Item) {
  if (item.t !== "array" || item.v.length !== 3) throw new CborError("counter signature");
  const [p, u, s] = item.v as [Item, Item, Item];
  if (p.t !== "bytes" || s.t !== "bytes") throw new CborError("counter signature");
  if (p.v.length > 0) header(decode(p.v));
  header(u);
}

/**
 * A COSE header map, refused or accepted exactly as coset's Header reads it: int (i64) or text
 * labels, no label twice; alg and crit entries registered or private; a content format
 * registered, or text of the form type/subtype; kid, IV and partial IV non-empty byte strings,
 * not both IVs; counter signatures well-formed. Other labels are kept without a look.
 */
function header(item: Item): Header {
  if (item.t !== "map") throw new CborError("header is not a map");
  const seen = new Set<string>();
  const out: Header = {};
  let iv = false;
  let partialIv = false;
  for (const [key, value] of item.v) {
    if (key.t !== "text" && i64(key) === null) throw new CborError("header label");
    const label = key.t === "int" ? `i${key.v}` : `t${(key as { v: string }).v}`;
    if (seen.has(label)) throw new CborError("duplicate header label");
    seen.add(label);
    if (key.t !== "int") continue;
    switch (key.v) {
      case 1n:
        if (!registeredOrPrivate(value, ALGORITHMS)) throw new CborError("alg");
        out.alg = value;
        break;
      case 2n:
        if (value.t !== "array" || value.v.length === 0 || !value.v.every((v) => registeredOrPrivate(v, HEADER_PARAMETERS))) throw new CborError("crit");
        break;
      case 3n:
        if (value.t === "text") {
          const text = value.v;
          if (text === "" || text.trim() !== text || text.split("/").length !== 2) throw new CborError("content type");
        } else {
          const format = i64(value);
          if (format === null || !COAP_CONTENT_FORMATS.has(format)) throw new CborError("content type");
        }
        break;
      case 4n:
        out.kid = nonEmptyBytes(value);
        break;
      case 5n:
        nonEmptyBytes(value);
        iv = true;
        break;
      case 6n:
        nonEmptyBytes(value);
        partialIv = true;
        break;
      case 7n: {
        if (value.t !== "array" || value.v.length === 0) throw new CborError("counter signature");
        const first = value.v[0]!;
        if (first.t === "bytes") counterSignature(value);
        else if (first.t === "array") value.v.forEach(counterSignature);
        else throw new CborError("counter signature");
        break;
      }
    }
    if (iv && partialIv) throw new CborError("IV and partial IV");
  }
  return out;
}

export interface Sign1 {
  protectedBytes: Uint8Array;
  kid: Uint8Array;
  payload: Uint8Array;
  signature: Uint8Array;
}

/**
 * Strict COSE_Sign1: tag 18, nothing after it, an embedded payload, alg ES256 in the protected
 * header and nowhere else, kid in the protected header and nowhere else. Checked in that order.
 */
export function openSign1(bytes: Uint8Array): Sign1 {
  let protectedBytes: Uint8Array, protectedHeader: Header, unprotected: Header, payload: Item, signature: Item;
  try {
    const item = decode(bytes);
    if (item.t !== "tag" || item.tag !== 18n || item.v.t !== "array" || item.v.v.length !== 4) throw new CborError("not a tagged COSE_Sign1");
    const [p, u, pl, s] = item.v.v as [Item, Item, Item, Item];
    if (p.t !== "bytes" || s.t !== "bytes" || (pl.t !== "bytes" && pl.t !== "null")) throw new CborError("COSE_Sign1 item types");
    protectedBytes = p.v;
    protectedHeader = p.v.length === 0 ? {} : header(decode(p.v));
    unprotected = header(u);
    payload = pl;
    signature = s;
  } catch (e) {
    if (e instanceof CborError) throw new Refused("bad_cbor");
    throw e;
  }
  if (payload.t !== "bytes") throw new Refused("bad_cbor");
  const alg = protectedHeader.alg;
  if (!alg || alg.t !== "int" || alg.v !== ES256 || unprotected.alg) throw new Refused("algorithm_not_allowed");
  if (unprotected.kid) throw new Refused("kid_unprotected");
  if (!protectedHeader.kid) throw new Refused("kid_missing");
  return { protectedBytes, kid: protectedHeader.kid, payload: payload.v, signature: signature.v };
}

/** Steps 1 to 4: length and prefix, Base45, zlib, the COSE_Sign1 envelope. */
function unwrap(pass: string): Sign1 {
  if (utf8.encode(pass).length > MAX_PASS_CHARS) throw new Refused("too_long");
  if (!pass.startsWith(PREFIX)) throw new Refused("bad_prefix");
  const compressed = unbase45(pass.slice(PREFIX.length));
  if (!compressed) throw new Refused("bad_base45");
  const inflated = unzlib(compressed, MAX_COSE_BYTES);
  if (inflated === "corrupt") throw new Refused("bad_compression");
  if (inflated === "too_large") throw new Refused("too_large");
  return openSign1(inflated);
}

const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

function scalar(bytes: Uint8Array): bigint {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

/** The signature is 64 bytes of r || s with 0 < r, s < n: anything else is a format error. */
export function signatureFormatOk(signature: Uint8Array): boolean {
  if (signature.length !== 64) return false;
  const r = scalar(signature.subarray(0, 32));
  const s = scalar(signature.subarray(32));
  return r > 0n && r < N && s > 0n && s < N;
}

export function sigStructure(protectedBytes: Uint8Array, payload: Uint8Array): Uint8Array {
  return concat([Uint8Array.of(0x84, 0x6a), utf8.encode("Signature1"), byteString(protectedBytes), Uint8Array.of(0x40), byteString(payload)]);
}

export async function verifyEs256(key: CryptoKey, signature: Uint8Array, data: Uint8Array): Promise<boolean> {
  return crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, signature as BufferSource, data as BufferSource);
}

interface SignedClaims {
  issuer: string;
  notBefore: bigint;
  expiresAt: bigint;
  passId: Uint8Array;
  view: Omit<OfficerView, "pass_id" | "issuer" | "expires_at">;
}

const FIELDS = ["v", "n", "dob", "fl", "ap", "ad", "t"];

// Rust's char::is_whitespace (Unicode White_Space), which chrono skips before each number.
const WS = "[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*";
const DATE = new RegExp(`^${WS}([+-][0-9]+|[0-9]{1,4})-${WS}([0-9]{1,2})-${WS}([0-9]{1,2})$`);

/**
 * A date as chrono's `NaiveDate::parse_from_str(text, "%Y-%m-%d")` reads it (a signed year of
 * any length or 1 to 4 digits, 1 or 2 digits of month and day, whitespace before each number),
 * written back as chrono writes a NaiveDate.
 */
function date(text: string | undefined): string | null {
  const match = text === undefined ? null : DATE.exec(text);
  if (!match) return null;
  const year = Number(match[1]);
  const [month, day] = [Number(match[2]), Number(match[3])];
  if (!Number.isSafeInteger(year) || year < -262144 || year > 262143) return null;
  const at = new Date(0);
  at.setUTCFullYear(year, month - 1, day);
  if (at.getUTCFullYear() !== year || at.getUTCMonth() !== month - 1 || at.getUTCDate() !== day) return null;
  const y = year >= 0 && year <= 9999 ? String(year).padStart(4, "0") : `${year < 0 ? "-" : "+"}${String(Math.abs(year)).padStart(4, "0")}`;
  return `${y}-${String(month).padStart(2, "0")}-${String(day).padStart(2, "0")}`;
}

/** Strict claims: every claim present with its type, nothing unknown, whole-second times. */
function claims(payload: Uint8Array): SignedClaims | null {
  let item: Item;
  try {
    item = decode(payload);
  } catch {
    return null;
  }
  if (item.t !== "map") return null;
  const seen: string[] = [];
  let issuer: string | undefined, exp: bigint | undefined, nbf: bigint | undefined, iat: bigint | undefined, cti: Uint8Array | undefined;
  let data: [Item, Item][] | undefined;
  let others = 0;
  for (const [key, value] of item.v) {
    if (key.t !== "int" && key.t !== "text") return null;
    const label = key.t === "int" ? `i${key.v}` : `t${key.v}`;
    if (seen.includes(label)) return null;
    seen.push(label);
    if (key.t === "int" && key.v >= 1n && key.v <= 7n) {
      switch (key.v) {
        case 1n:
          if (value.t !== "text") return null;
          issuer = value.v;
          break;
        case 2n:
        case 3n:
          return null; // sub, aud: not in a pass
        case 4n:
        case 5n:
        case 6n: {
          // Whole seconds only: a float is a fractional time, refused.
          if (value.t !== "int") return null;
          if (key.v === 4n) exp = value.v;
          else if (key.v === 5n) nbf = value.v;
          else iat = value.v;
          break;
        }
        case 7n:
          if (value.t !== "bytes") return null;
          cti = value.v;
          break;
      }
    } else if (key.t === "int" && key.v === EHAC_CLAIM && value.t === "map") {
      data = value.v;
    } else {
      others++;
    }
  }
  if (others > 0 || !data) return null;
  const fields = new Map<string, Item>();
  for (const [key, value] of data) {
    if (key.t !== "text" || fields.has(key.v) || !FIELDS.includes(key.v)) return null;
    fields.set(key.v, value);
  }
  const version = fields.get("v");
  if (version?.t !== "int" || version.v !== 1n) return null;
  const text = (name: string) => {
    const value = fields.get(name);
    return value?.t === "text" ? value.v : undefined;
  };
  const [name, dob, flight, airport, arrival, triage] = [text("n"), date(text("dob")), text("fl"), text("ap"), date(text("ad")), text("t")];
  if (issuer === undefined || iat === undefined || nbf === undefined || exp === undefined) return null;
  if (!cti || cti.length === 0 || cti.length > 64) return null;
  if (name === undefined || dob === null || flight === undefined || airport === undefined || arrival === null) return null;
  if (triage !== "green" && triage !== "yellow" && triage !== "red") return null;
  return {
    issuer,
    notBefore: nbf,
    expiresAt: exp,
    passId: cti,
    view: { traveller_name: name, date_of_birth: dob, flight, arrival_airport: airport, arrival_date: arrival, triage },
  };
}

export const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** The revocation key of a pass id: the first 16 bytes of SHA-256 over it, hex. */
export async function passHash(passId: Uint8Array): Promise<string> {
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", passId as BufferSource)).subarray(0, 16));
}

/** RFC 3339 at whole seconds, as chrono writes a DateTime<Utc>. */
export function rfc3339(seconds: bigint): string {
  return new Date(Number(seconds) * 1000).toISOString().replace(/\.000Z$/, "Z");
}

/** Judges a scanned pass at the gate of `gateAirport` (IATA) at `now` (ms since the epoch). */
export async function verify(pass: string, trust: GateTrustList, gateAirport: string, now: number): Promise<Verdict> {
  const reject = (reason: RejectReason): Verdict => ({ verdict: "REJECT", reason });
  let sign1: Sign1;
  try {
    sign1 = unwrap(pass);
  } catch (e) {
    if (e instanceof Refused) return reject(e.reason);
    throw e;
  }
  const stale = trust.isStale(now);
  const entry: TrustedKey | undefined = sign1.kid.length === 8 ? trust.key(hex(sign1.kid)) : undefined;
  if (!entry) return stale ? { verdict: "DEGRADED", reason: "unknown_kid_stale_trust_list", view: null } : reject("unknown_kid");
  const tolerance = CLOCK_TOLERANCE_SECS * 1000;
  if (now + tolerance < entry.validFrom || now - tolerance > entry.validUntil) return reject("key_not_valid");
  if (!signatureFormatOk(sign1.signature)) return reject("bad_signature_format");
  if (!(await verifyEs256(entry.key, sign1.signature, sigStructure(sign1.protectedBytes, sign1.payload)))) return reject("bad_signature");
  const signed = claims(sign1.payload);
  if (!signed) return reject("bad_claims");
  if (signed.issuer !== entry.region) return reject("wrong_issuer");
  const seconds = BigInt(Math.floor(now / 1000));
  if (signed.notBefore > seconds + BigInt(CLOCK_TOLERANCE_SECS)) return reject("not_yet_valid");
  if (signed.expiresAt < seconds - BigInt(CLOCK_TOLERANCE_SECS)) return reject("expired");
  if (trust.isRevoked(await passHash(signed.passId))) return reject("revoked");
  if (!asciiEqualIgnoreCase(signed.view.arrival_airport, gateAirport.trim())) return reject("wrong_airport");
  const view: OfficerView = { ...signed.view, pass_id: hex(signed.passId), issuer: signed.issuer, expires_at: rfc3339(signed.expiresAt) };
  return stale ? { verdict: "DEGRADED", reason: "stale_trust_list", view } : { verdict: "ACCEPT", ...view };
}

/** Rust's eq_ignore_ascii_case: only A-Z and a-z fold. */
function asciiEqualIgnoreCase(a: string, b: string): boolean {
  const fold = (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());
  return fold(a) === fold(b);
}
