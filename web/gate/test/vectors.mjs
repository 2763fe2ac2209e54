// The shared vectors (written by crates/ehac-pass/tests/vectors.rs) judged by the gate app's
// verifier. Used by the Node test and, inside the page, by the Chromium test.

/** JSON with sorted keys: serde_json writes the expected verdicts' fields in sorted order. */
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  return JSON.stringify(value);
}

export async function runVectors(core, vectors) {
  const { verify, GateTrustList, parseRootPem, TrustError } = core;
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const roots = {};
  for (const [name, pem] of Object.entries(vectors.roots)) roots[name] = await parseRootPem(pem);
  const lists = {};
  const failures = [];
  let verifyMs = 0;
  for (const c of vectors.passes) {
    const pinned = c.roots.map((name) => roots[name]);
    lists[c.trust_list] ??= await GateTrustList.load(bytes(vectors.trust_lists[c.trust_list]), pinned);
    const started = performance.now();
    const verdict = await verify(c.pass, lists[c.trust_list], c.airport, Date.parse(c.now));
    verifyMs += performance.now() - started;
    if (canonical(verdict) !== canonical(c.expected)) failures.push({ name: c.name, expected: c.expected, got: verdict });
  }
  for (const u of vectors.trust_list_updates) {
    const pinned = u.roots.map((name) => roots[name]);
    let got;
    try {
      const offered = bytes(vectors.trust_lists[u.offered]);
      const list = u.installed === null ? await GateTrustList.load(offered, pinned) : await (await GateTrustList.load(bytes(vectors.trust_lists[u.installed]), pinned)).update(offered, pinned);
      got = { installed: list.info.version };
    } catch (e) {
      if (!(e instanceof TrustError)) throw e;
      got = { refused: e.code };
    }
    if (canonical(got) !== canonical(u.expected)) failures.push({ name: `update ${u.name}`, expected: u.expected, got });
  }
  return { passes: vectors.passes.length, updates: vectors.trust_list_updates.length, failures, verifyMs };
}
