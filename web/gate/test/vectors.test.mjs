// Every shared vector through the gate app's verifier under Node: the same verdict and reason
// as ehac_pass for each one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { loadCore, VECTORS } from "./support.mjs";
import { runVectors } from "./vectors.mjs";

test("the gate app gives every shared vector the Rust verifier's verdict", async () => {
  const vectors = JSON.parse(await readFile(VECTORS, "utf8"));
  const result = await runVectors(await loadCore(), vectors);
  assert.deepEqual(result.failures, []);
  assert.ok(result.passes >= 100 && result.updates >= 19, `only ${result.passes} passes and ${result.updates} updates in ${VECTORS}`);
  console.log(`${result.passes} pass vectors and ${result.updates} trust-list updates agree; ${(result.verifyMs / result.passes).toFixed(3)} ms per verification under Node`);
});
