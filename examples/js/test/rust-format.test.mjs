// Unit tests of the Rust-compatible number formatting (run: npm test, offline).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { displayRust, toFixedRust } from '../lib/rust-format.js';

test('{:.3} rounds exact ties to even, unlike toFixed', () => {
  assert.equal((0.0625).toFixed(3), '0.063'); // what JavaScript does
  assert.equal(toFixedRust(0.0625), '0.062');
  assert.equal(toFixedRust(0.1875), '0.188');
  assert.equal(toFixedRust(2.0625), '2.062');
  assert.equal(toFixedRust(-0.0625), '-0.062');
});

test('{:.3} rounds from the exact binary value', () => {
  assert.equal(toFixedRust(1.0005), '1.000'); // 1.000499999999999989...
  assert.equal(toFixedRust(0.0005), '0.001'); // 0.000500000000000000010...
  assert.equal(toFixedRust(2.675), '2.675');
  assert.equal(toFixedRust(999.9995), '1000.000');
  assert.equal(toFixedRust(1e21), '1000000000000000000000.000');
  assert.equal(toFixedRust(2 ** 64), '18446744073709551616.000');
});

test('{:.3} keeps the sign of zero and of values that round to zero', () => {
  assert.equal(toFixedRust(0), '0.000');
  assert.equal(toFixedRust(-0), '-0.000');
  assert.equal(toFixedRust(-0.0001), '-0.000');
});

test('{:.3} and {} name non-finite values as Rust does', () => {
  for (const format of [toFixedRust, displayRust]) {
    assert.equal(format(NaN), 'NaN');
    assert.equal(format(Infinity), 'inf');
    assert.equal(format(-Infinity), '-inf');
  }
});

test('{} never uses exponent notation and drops ".0"', () => {
  assert.equal(displayRust(54), '54');
  assert.equal(displayRust(0.8 * 75), '60');
  assert.equal(displayRust(0.1 + 0.2), '0.30000000000000004');
  assert.equal(displayRust(1e21), '1000000000000000000000');
  assert.equal(displayRust(1.5e22), '15000000000000000000000');
  assert.equal(displayRust(1e-7), '0.0000001');
  assert.equal(displayRust(-2.5e-8), '-0.000000025');
  assert.equal(displayRust(2 ** 64), '18446744073709552000');
  assert.equal(displayRust(0), '0');
  assert.equal(displayRust(-0), '-0');
});

test('{} settles shortest-digit ties away from zero, as Rust does', () => {
  // 1519614377979036.25 lies exactly between ...036.2 and ...036.3; both read back as it.
  assert.equal(String(1519614377979036.25), '1519614377979036.2'); // V8 takes the even one
  assert.equal(displayRust(1519614377979036.25), '1519614377979036.3');
  assert.equal(displayRust(-218884736464097.625), '-218884736464097.63');
});

test('both agree with Rust on the vectors of gen-rust-f64-format.rs', () => {
  const lines = readFileSync(new URL('./rust-f64-format.txt', import.meta.url), 'utf8').trim().split('\n');
  const view = new DataView(new ArrayBuffer(8));
  for (const line of lines) {
    const [bits, fixed, display] = line.split(' ');
    view.setBigUint64(0, BigInt(`0x${bits}`));
    const x = view.getFloat64(0);
    assert.equal(toFixedRust(x), fixed, `{:.3} of ${bits}`);
    assert.equal(displayRust(x), display, `{} of ${bits}`);
  }
  assert.ok(lines.length > 150);
});
