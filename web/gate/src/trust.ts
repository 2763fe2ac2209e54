// The trust list on the gate, as crates/ehac-pass/src/trust.rs loads it: the root signature
// checked against the pinned roots, the JSON read strictly, every entry checked, and a list
// only ever replaced by a newer one (no rollback to a list that still has a removed key or
// lacks a revocation).

import { hex, openSign1, sigStructure, signatureFormatOk, verifyEs256 } from "./verify";
import { JsonNumber, parseJson, type Json } from "./json";

export const MAX_TRUST_LIST_BYTES = 16 << 20;

export type TrustErrorCode =
  | "envelope" | "unknown_root" | "bad_signature" | "too_large" | "json" | "entry" | "duplicate_key" | "rollback" | "not_newer";

export class TrustError extends Error {
  constructor(readonly code: TrustErrorCode, detail = "") {
    super(detail ? `${code}: ${detail}` : code);
  }
}

export interface RootKey {
  kid: string;
  key: CryptoKey;
}

export interface TrustedKey {
  kid: string;
  region: string;
  key: CryptoKey;
  /** ms since the epoch */
  validFrom: number;
  validUntil: number;
}

export interface TrustListInfo {
  version: number;
  issued: number;
  nextUpdate: number;
  maxAgeSecs: number;
  keys: number;
  revocations: number;
}

const EC = { name: "ECDSA", namedCurve: "P-256" } as const;

export async function kidOf(key: CryptoKey): Promise<string> {
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", key));
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", raw)).subarray(0, 8));
}

/** A pinned root: SPKI PEM (`root.pub.pem`). */
export async function parseRootPem(pem: string): Promise<RootKey> {
  const body = /-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----/.exec(pem);
  if (!body) throw new Error("not a PEM public key (-----BEGIN PUBLIC KEY-----)");
  const der = Uint8Array.from(atob(body[1]!.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  const key = await crypto.subtle.importKey("spki", der, EC, true, ["verify"]);
  return { kid: await kidOf(key), key };
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

function time(value: Json | undefined): number {
  if (typeof value !== "string" || !RFC3339.test(value)) throw new TrustError("json", "not an RFC 3339 time");
  const ms = Date.parse(value.replace(" ", "T").replace(/(\.\d{3})\d+/, "$1"));
  if (Number.isNaN(ms)) throw new TrustError("json", "not an RFC 3339 time");
  return ms;
}

function object(value: Json | undefined, fields: string[]): { [key: string]: Json } {
  if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof JsonNumber) throw new TrustError("json", "not an object");
  for (const key of Object.keys(value)) if (!fields.includes(key)) throw new TrustError("json", `unknown field ${key}`);
  for (const key of fields) if (!(key in value)) throw new TrustError("json", `missing field ${key}`);
  return value;
}

function text(value: Json | undefined): string {
  if (typeof value !== "string") throw new TrustError("json", "not a string");
  return value;
}

function unsigned(value: Json | undefined): number {
  const n = value instanceof JsonNumber ? value.unsigned : null;
  if (n === null) throw new TrustError("json", "not an unsigned integer");
  return n;
}

function array(value: Json | undefined): Json[] {
  if (!Array.isArray(value)) throw new TrustError("json", "not an array");
  return value;
}

const BASE64URL_32 = /^[A-Za-z0-9_-]{43}$/;

async function publicJwk(value: Json): Promise<CryptoKey> {
  if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof JsonNumber) throw new Error("not an object");
  if ("d" in value) throw new Error("a private key where a public key belongs");
  const { kty, crv, x, y } = value;
  if (kty !== "EC" || crv !== "P-256" || typeof x !== "string" || typeof y !== "string" || !BASE64URL_32.test(x) || !BASE64URL_32.test(y)) {
    throw new Error("not a P-256 public JWK");
  }
  return crypto.subtle.importKey("jwk", { kty, crv, x, y }, EC, true, ["verify"]);
}

/** The trust list a gate verifies with. */
export class GateTrustList {
  private constructor(
    readonly bytes: Uint8Array,
    readonly info: TrustListInfo,
    private readonly keys: Map<string, TrustedKey>,
    private readonly revoked: Set<string>,
  ) {}

  /** Checks the root signature against the pinned roots, reads and indexes the list. */
  static async load(bytes: Uint8Array, roots: RootKey[]): Promise<GateTrustList> {
    if (bytes.length > MAX_TRUST_LIST_BYTES) throw new TrustError("too_large");
    let sign1;
    try {
      sign1 = openSign1(bytes);
    } catch {
      throw new TrustError("envelope");
    }
    const root = sign1.kid.length === 8 ? roots.find((r) => r.kid === hex(sign1.kid)) : undefined;
    if (!root) throw new TrustError("unknown_root", hex(sign1.kid));
    const data = sigStructure(sign1.protectedBytes, sign1.payload);
    if (!signatureFormatOk(sign1.signature) || !(await verifyEs256(root.key, sign1.signature, data))) throw new TrustError("bad_signature");
    let json: Json;
    try {
      json = parseJson(new TextDecoder("utf-8", { fatal: true }).decode(sign1.payload));
    } catch (e) {
      throw new TrustError("json", String(e));
    }
    const list = object(json, ["version", "issued", "next_update", "max_age_secs", "issuing_keys", "revoked_passes"]);
    const info: TrustListInfo = {
      version: unsigned(list.version),
      issued: time(list.issued),
      nextUpdate: time(list.next_update),
      maxAgeSecs: unsigned(list.max_age_secs),
      keys: 0,
      revocations: 0,
    };
    const entries = array(list.issuing_keys).map((e) => {
      const entry = object(e, ["kid", "region", "public_key", "valid_from", "valid_until"]);
      return { kid: text(entry.kid), region: text(entry.region), publicKey: entry.public_key!, validFrom: time(entry.valid_from), validUntil: time(entry.valid_until) };
    });
    const revocations = array(list.revoked_passes).map((r) => {
      const entry = object(r, ["pass_hash", "expires"]);
      time(entry.expires);
      return text(entry.pass_hash);
    });
    const keys = new Map<string, TrustedKey>();
    for (const entry of entries) {
      let key: CryptoKey;
      try {
        key = await publicJwk(entry.publicKey);
      } catch (e) {
        throw new TrustError("entry", `${entry.kid}: ${e}`);
      }
      const kid = await kidOf(key);
      if (!/^[0-9a-fA-F]{16}$/.test(entry.kid) || entry.kid.toLowerCase() !== kid) throw new TrustError("entry", `${entry.kid}: kid is not the kid of the public key`);
      if (entry.region === "") throw new TrustError("entry", `${entry.kid}: no region`);
      if (keys.has(kid)) throw new TrustError("duplicate_key", entry.kid);
      keys.set(kid, { kid, region: entry.region, key, validFrom: entry.validFrom, validUntil: entry.validUntil });
    }
    const revoked = new Set<string>();
    for (const hash of revocations) {
      if (!/^[0-9a-fA-F]{32}$/.test(hash)) throw new TrustError("entry", `${hash}: not 16 bytes of hex`);
      revoked.add(hash.toLowerCase());
    }
    info.keys = keys.size;
    info.revocations = revoked.size;
    return new GateTrustList(bytes, info, keys, revoked);
  }

  /** Only a newer list replaces this one: an older one is a rollback, the same one not newer. */
  async update(offered: Uint8Array, roots: RootKey[]): Promise<GateTrustList> {
    const list = await GateTrustList.load(offered, roots);
    if (list.info.version < this.info.version) throw new TrustError("rollback", `offered ${list.info.version}, installed ${this.info.version}`);
    if (list.info.version === this.info.version) throw new TrustError("not_newer", `version ${list.info.version}`);
    return list;
  }

  /** Older than its max_age_secs: keys added or passes revoked since may be missing. */
  isStale(now: number): boolean {
    return now - this.info.issued > this.info.maxAgeSecs * 1000;
  }

  key(kid: string): TrustedKey | undefined {
    return this.keys.get(kid);
  }

  isRevoked(passHash: string): boolean {
    return this.revoked.has(passHash);
  }
}
