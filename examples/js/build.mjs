// Builds threshold-cooldown.js (or another policy source) into a scalehost policy component.
//
//   node build.mjs OUTPUT.wasm [SOURCE.js]
//
// Uses componentize-js (StarlingMonkey, a SpiderMonkey build for WASI) through its library API:
// the `jco componentize` CLI fails on this WIT folder here ("failed to get path metadata").
// The engine's http and fetch-event features are disabled because they import wasi:http, which
// the host does not link; stdio, clocks and random stay (the host links wasi:cli, clocks and
// random with an empty context), so console.log output reaches the host log.

import { writeFile, mkdir } from 'node:fs/promises';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out || process.argv.length > 4) {
  console.error('usage: node build.mjs OUTPUT.wasm [SOURCE.js]');
  process.exit(2);
}
const output = resolve(out);
const source = process.argv[3] ? resolve(process.argv[3]) : resolve(here, 'threshold-cooldown.js');

// componentize-js bakes source paths relative to the working directory into the component;
// building from this directory keeps the output the same wherever the command is run from.
process.chdir(here);
const sourcePath = relative(here, source);
const started = performance.now();
const { component } = await componentize({
  sourcePath,
  witPath: resolve(here, '../../wit/policy@0.2.0'),
  worldName: 'policy',
  disableFeatures: ['http', 'fetch-event'],
});
await mkdir(dirname(output), { recursive: true });
await writeFile(output, component);
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(`wrote ${output} (${component.length} bytes) in ${seconds} s`);
