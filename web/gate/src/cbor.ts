// A small strict CBOR decoder (RFC 8949) for the few items a pass is made of. Written here rather
// than taken from npm because the gate must refuse and accept exactly what the Rust verifier
// (coset over ciborium) does: a general decoder either throws away what we must check (duplicate
// map keys, the original bytes of a byte string) or is stricter where ciborium is lenient
// (non-preferred integers, indefinite lengths, both of which ciborium reads and the shared
// vectors pin down).

export type Item =
  | { t: "int"; v: bigint }
  | { t: "bytes"; v: Uint8Array }
  | { t: "text"; v: string }
  | { t: "array"; v: Item[] }
  | { t: "map"; v: [Item, Item][] }
  | { t: "tag"; tag: bigint; v: Item }
  | { t: "float"; v: number }
  | { t: "bool"; v: boolean }
  | { t: "null" };

export class CborError extends Error {}

/** Nesting deeper than this is refused, as ciborium refuses it. */
const MAX_DEPTH = 256;
const BREAK = Symbol("break");
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** One item filling `bytes` exactly: trailing bytes are an error. */
export function decode(bytes: Uint8Array): Item {
  const reader = new Reader(bytes);
  const item = reader.item(0);
  if (item === BREAK) throw new CborError("unexpected break");
  if (reader.at !== bytes.length) throw new CborError("trailing bytes");
  return item;
}

class Reader {
  at = 0;
  constructor(private readonly bytes: Uint8Array) {}

  private byte(): number {
    if (this.at >= this.bytes.length) throw new CborError("truncated");
    return this.bytes[this.at++]!;
  }

  private take(length: number): Uint8Array {
    if (length > this.bytes.length - this.at) throw new CborError("truncated");
    const out = this.bytes.subarray(this.at, this.at + length);
    this.at += length;
    return out;
  }

  /** The head's argument; null for an indefinite length (info 31). */
  private argument(info: number): bigint | null {
    if (info < 24) return BigInt(info);
    const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
    if (size === 0) {
      if (info === 31) return null;
      throw new CborError("reserved additional information");
    }
    let value = 0n;
    for (const b of this.take(size)) value = (value << 8n) | BigInt(b);
    return value;
  }

  private length(argument: bigint): number {
    if (argument > BigInt(this.bytes.length - this.at)) throw new CborError("length beyond the input");
    return Number(argument);
  }

  item(depth: number): Item | typeof BREAK {
    if (depth > MAX_DEPTH) throw new CborError("nested too deep");
    const initial = this.byte();
    const major = initial >> 5;
    const info = initial & 0x1f;
    if (initial === 0xff) return BREAK;
    switch (major) {
      case 0:
      case 1: {
        const n = this.argument(info);
        if (n === null) throw new CborError("indefinite integer");
        return { t: "int", v: major === 0 ? n : -1n - n };
      }
      case 2:
      case 3: {
        const n = this.argument(info);
        let bytes: Uint8Array;
        if (n === null) {
          // Chunks of the same major type, each definite, until a break.
          const chunks: Uint8Array[] = [];
          for (;;) {
            const head = this.byte();
            if (head === 0xff) break;
            if (head >> 5 !== major) throw new CborError("chunk of another type");
            const size = this.argument(head & 0x1f);
            if (size === null) throw new CborError("nested indefinite chunk");
            chunks.push(this.take(this.length(size)));
          }
          bytes = concat(chunks);
        } else {
          bytes = this.take(this.length(n));
        }
        if (major === 2) return { t: "bytes", v: bytes };
        try {
          return { t: "text", v: utf8.decode(bytes) };
        } catch {
          throw new CborError("text is not UTF-8");
        }
      }
      case 4: {
        const n = this.argument(info);
        const items: Item[] = [];
        if (n === null) {
          for (let item = this.item(depth + 1); item !== BREAK; item = this.item(depth + 1)) items.push(item);
        } else {
          const count = this.length(n);
          for (let i = 0; i < count; i++) items.push(this.definite(depth + 1));
        }
        return { t: "array", v: items };
      }
      case 5: {
        const n = this.argument(info);
        const entries: [Item, Item][] = [];
        if (n === null) {
          for (let key = this.item(depth + 1); key !== BREAK; key = this.item(depth + 1)) entries.push([key, this.definite(depth + 1)]);
        } else {
          const count = this.length(n);
          for (let i = 0; i < count; i++) entries.push([this.definite(depth + 1), this.definite(depth + 1)]);
        }
        return { t: "map", v: entries };
      }
      case 6: {
        const tag = this.argument(info);
        if (tag === null) throw new CborError("indefinite tag");
        return { t: "tag", tag, v: this.definite(depth + 1) };
      }
      default:
        return this.simple(info);
    }
  }

  private definite(depth: number): Item {
    const item = this.item(depth);
    if (item === BREAK) throw new CborError("unexpected break");
    return item;
  }

  private simple(info: number): Item {
    switch (info) {
      case 20:
        return { t: "bool", v: false };
      case 21:
        return { t: "bool", v: true };
      case 22:
        return { t: "null" };
      case 25: {
        const bits = this.take(2);
        return { t: "float", v: half((bits[0]! << 8) | bits[1]!) };
      }
      case 26:
        return { t: "float", v: new DataView(copy(this.take(4))).getFloat32(0) };
      case 27:
        return { t: "float", v: new DataView(copy(this.take(8))).getFloat64(0) };
      default:
        throw new CborError("simple value not allowed");
    }
  }
}

function half(bits: number): number {
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  const sign = bits & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

function copy(bytes: Uint8Array): ArrayBuffer {
  return bytes.slice().buffer as ArrayBuffer;
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A definite-length head in preferred form, for building the Sig_structure. */
export function head(major: number, argument: number): Uint8Array {
  const m = major << 5;
  if (argument < 24) return Uint8Array.of(m | argument);
  if (argument < 0x100) return Uint8Array.of(m | 24, argument);
  if (argument < 0x10000) return Uint8Array.of(m | 25, argument >> 8, argument & 0xff);
  return Uint8Array.of(m | 26, argument >>> 24, (argument >> 16) & 0xff, (argument >> 8) & 0xff, argument & 0xff);
}

export function byteString(bytes: Uint8Array): Uint8Array {
  return concat([head(2, bytes.length), bytes]);
}
