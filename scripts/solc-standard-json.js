#!/usr/bin/env node
// Reads a solc standard-JSON input on stdin, compiles it with the npm `solc` package and writes the
// standard-JSON output to stdout. Imports are resolved against the project root (first) and its
// node_modules (e.g. "@openzeppelin/contracts/..."). Usage: node scripts/solc-standard-json.js [root]
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(process.argv[2] || path.join(__dirname, '..'));
const solc = require(require.resolve('solc', { paths: [root] }));

function findImports(importPath) {
  const candidates = [path.join(root, importPath), path.join(root, 'node_modules', importPath)];
  for (const candidate of candidates) {
    const resolved = path.resolve(candidate);
    if (!resolved.startsWith(root + path.sep)) continue;
    if (fs.existsSync(resolved)) return { contents: fs.readFileSync(resolved, 'utf8') };
  }
  return { error: `File not found: ${importPath}` };
}

const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  const input = Buffer.concat(chunks).toString('utf8');
  if (process.env.SOLC_VERSION_ONLY) {
    process.stdout.write(solc.version());
    return;
  }
  const output = solc.compile(input, { import: findImports });
  process.stdout.write(output);
});
