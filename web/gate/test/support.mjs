// Shared by the Node tests: the verifier bundled from the TypeScript sources as the app bundles it.
import { build } from "esbuild";
import { webcrypto } from "node:crypto";
import { fileURLToPath } from "node:url";

// Node 18 (Debian 12's nodejs) has WebCrypto only as node:crypto's webcrypto, not as a global.
globalThis.crypto ??= webcrypto;

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const VECTORS = fileURLToPath(new URL("../../../crates/ehac-pass/tests/vectors.json", import.meta.url));

export async function bundleCore() {
  const out = await build({ entryPoints: [`${ROOT}/src/core.ts`], bundle: true, format: "esm", platform: "neutral", write: false, target: "es2022" });
  return out.outputFiles[0].text;
}

export async function loadCore() {
  return import(`data:text/javascript;base64,${Buffer.from(await bundleCore()).toString("base64")}`);
}
