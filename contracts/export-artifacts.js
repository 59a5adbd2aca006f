#!/usr/bin/env node
// Copies the ABI and bytecode of the deployable contracts from forge's out/ into the
// committed artifacts/ (which the Rust `sol!` bindings read). With --check, writes nothing
// and exits 1 if the committed artifacts differ from a fresh `forge build`.
"use strict";
const fs = require("fs");
const path = require("path");

const here = __dirname;
const contracts = ["MockUSDC", "Escrow", "Registry"];
const check = process.argv.includes("--check");
let stale = [];

for (const name of contracts) {
  const built = JSON.parse(fs.readFileSync(path.join(here, "out", `${name}.sol`, `${name}.json`), "utf8"));
  const trimmed = {
    contractName: name,
    abi: built.abi,
    bytecode: built.bytecode.object,
    deployedBytecode: built.deployedBytecode.object,
  };
  const text = JSON.stringify(trimmed, null, 2) + "\n";
  const target = path.join(here, "artifacts", `${name}.json`);
  if (check) {
    const current = fs.existsSync(target) ? fs.readFileSync(target, "utf8") : "";
    if (current !== text) stale.push(name);
  } else {
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, text);
  }
}
if (stale.length) {
  process.stderr.write(
    `contracts/artifacts out of date for ${stale.join(", ")}: run \`cd contracts && forge build && node export-artifacts.js\` and commit\n`,
  );
  process.exit(1);
}
