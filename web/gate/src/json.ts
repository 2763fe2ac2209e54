// A strict JSON reader for the trust list: the Rust gate reads it with serde_json and
// deny_unknown_fields, which refuses a field given twice; JSON.parse keeps the last one and says
// nothing, so a list the Rust gate refuses would load here. Numbers keep their text, so "1.0"
// is not taken for the integer 1.

export class JsonNumber {
  constructor(readonly text: string) {}
  /** A non-negative integer that fits a u64, as serde reads one; otherwise null. */
  get unsigned(): number | null {
    if (!/^(0|[1-9][0-9]*)$/.test(this.text) || BigInt(this.text) > 0xffffffffffffffffn) return null;
    return Number(this.text);
  }
}

export type Json = null | boolean | string | JsonNumber | Json[] | { [key: string]: Json };

export class JsonError extends Error {}

export function parseJson(text: string): Json {
  let at = 0;
  const space = () => {
    while (at < text.length && " \t\n\r".includes(text[at]!)) at++;
  };
  const fail = (what: string): never => {
    throw new JsonError(`${what} at ${at}`);
  };
  const string = (): string => {
    const match = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/.exec(text.slice(at));
    if (!match) fail("bad string");
    at += match![0].length;
    return JSON.parse(match![0]) as string;
  };
  const value = (depth: number): Json => {
    if (depth > 128) fail("nested too deep");
    space();
    const c = text[at];
    if (c === "{") {
      at++;
      const out: { [key: string]: Json } = {};
      space();
      if (text[at] === "}") {
        at++;
        return out;
      }
      for (;;) {
        space();
        if (text[at] !== '"') fail("expected a key");
        const key = string();
        if (Object.prototype.hasOwnProperty.call(out, key)) fail(`duplicate field ${key}`);
        space();
        if (text[at++] !== ":") fail("expected :");
        out[key] = value(depth + 1);
        space();
        const next = text[at++];
        if (next === "}") return out;
        if (next !== ",") fail("expected , or }");
      }
    }
    if (c === "[") {
      at++;
      const out: Json[] = [];
      space();
      if (text[at] === "]") {
        at++;
        return out;
      }
      for (;;) {
        out.push(value(depth + 1));
        space();
        const next = text[at++];
        if (next === "]") return out;
        if (next !== ",") fail("expected , or ]");
      }
    }
    if (c === '"') return string();
    for (const [word, result] of [["true", true], ["false", false], ["null", null]] as const) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return result;
      }
    }
    const number = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(at));
    if (!number) fail("unexpected character");
    at += number![0].length;
    return new JsonNumber(number![0]);
  };
  const result = value(0);
  space();
  if (at !== text.length) fail("trailing characters");
  return result;
}
