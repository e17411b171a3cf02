// Unit tests of the decision logic (run: npm test, offline); they mirror the Rust plugin's tests.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decide,
  decodeLastScale,
  encodeLastScale,
  inCooldown,
  pendingApplied,
  perHostValue,
  scaleReason,
  atLimitMessage,
} from '../lib/policy.js';

const rule = (direction, threshold, step, limit) => ({ direction, threshold, step, limit });
const series = (...values) => ({ labels: [['host', 'h']], samples: values.map((value) => ({ at: 0n, value })) });

test('per-host value is the window sum over reporting hosts', () => {
  assert.equal(perHostValue([series(10, 20), series(30), series()]), 30);
  assert.equal(perHostValue([]), undefined);
  assert.equal(perHostValue([series()]), undefined);
});

test('per-host value sums like Rust, down to the sign of zero', () => {
  // Rust's f64 Sum starts from -0.0: all-negative-zero samples give -0, which prints "-0.000".
  assert.ok(Object.is(perHostValue([series(-0), series()]), -0));
  assert.ok(Object.is(perHostValue([series(-0, 0)]), 0));
  assert.ok(Number.isNaN(perHostValue([series(Infinity), series(-Infinity)])));
});

test('up rule fires above the threshold and respects its limit', () => {
  const rules = [rule('up', 100, { by: 2 }, 5)];
  assert.deepEqual(decide(rules, 100, 1), { kind: 'none' });
  assert.deepEqual(decide(rules, 101, 1), { kind: 'scale', index: 0, replicas: 3 });
  assert.deepEqual(decide(rules, 101, 4), { kind: 'scale', index: 0, replicas: 5 });
  assert.deepEqual(decide(rules, 101, 5), { kind: 'at-limit', index: 0 });
  assert.deepEqual(decide(rules, 101, 7), { kind: 'at-limit', index: 0 }); // never scales down
  assert.deepEqual(decide(rules, NaN, 1), { kind: 'none' });
});

test('down rule fires below the threshold and respects its limit', () => {
  const rules = [rule('down', 10, { by: -3 }, 2)];
  assert.deepEqual(decide(rules, 10, 8), { kind: 'none' });
  assert.deepEqual(decide(rules, 9, 8), { kind: 'scale', index: 0, replicas: 5 });
  assert.deepEqual(decide(rules, 9, 4), { kind: 'scale', index: 0, replicas: 2 });
  assert.deepEqual(decide(rules, 9, 2), { kind: 'at-limit', index: 0 });
  assert.deepEqual(decide(rules, 9, 1), { kind: 'at-limit', index: 0 });
});

test('to steps are absolute and clamped; by steps clamp to u32', () => {
  assert.deepEqual(decide([rule('up', 0, { to: 50 }, 20)], 1, 3), { kind: 'scale', index: 0, replicas: 20 });
  assert.deepEqual(decide([rule('down', 5, { to: 0 }, 1)], 1, 3), { kind: 'scale', index: 0, replicas: 1 });
  assert.deepEqual(decide([rule('up', 0, { to: 2 }, 20)], 1, 3), { kind: 'at-limit', index: 0 });
  const max = 2 ** 32 - 1;
  assert.deepEqual(decide([rule('up', 0, { by: 2 ** 31 - 1 }, max)], 1, max - 5), { kind: 'scale', index: 0, replicas: max });
  assert.deepEqual(decide([rule('down', 5, { by: -(2 ** 31) }, 0)], 1, 3), { kind: 'scale', index: 0, replicas: 0 });
});

test('first firing rule wins', () => {
  const rules = [rule('up', 200, { by: 4 }, 10), rule('up', 100, { by: 1 }, 10), rule('down', 50, { by: -1 }, 1)];
  assert.deepEqual(decide(rules, 250, 2), { kind: 'scale', index: 0, replicas: 6 });
  assert.deepEqual(decide(rules, 150, 2), { kind: 'scale', index: 1, replicas: 3 });
  assert.deepEqual(decide(rules, 75, 2), { kind: 'none' });
  assert.deepEqual(decide(rules, 25, 2), { kind: 'scale', index: 2, replicas: 1 });
});

test('cooldown holds for its duration and saturates', () => {
  assert.equal(inCooldown(undefined, 1_000_000n, 120n), false);
  assert.equal(inCooldown(1_000_000n, 1_000_000n, 120n), true);
  assert.equal(inCooldown(1_000_000n, 1_119_999n, 120n), true);
  assert.equal(inCooldown(1_000_000n, 1_120_000n, 120n), false);
  assert.equal(inCooldown(1_000_000n, 1_000_000n, 0n), false);
  assert.equal(inCooldown(1n, 2n ** 64n - 1n, 2n ** 64n - 1n), false); // u64::MAX saturates
});

test('last scale instant round-trips as 8 bytes little-endian', () => {
  const bytes = encodeLastScale(1_700_000_000_123n);
  assert.deepEqual([...bytes], [123, 104, 229, 207, 139, 1, 0, 0]);
  assert.equal(decodeLastScale(bytes), 1_700_000_000_123n);
  assert.equal(decodeLastScale(Uint8Array.of(1, 2, 3)), undefined);
  assert.equal(decodeLastScale(undefined), undefined);
  assert.equal(decodeLastScale(new Uint8Array(8).fill(255)), 2n ** 64n - 1n);
});

test('reason and log lines are byte-identical to the Rust plugin', () => {
  const rules = [rule('up', 54, { by: 2 }, 30), rule('down', 0.8 * 75, { by: -1 }, 2), rule('down', 1e21, { by: -1 }, 2)];
  assert.equal(scaleReason(rules, 0, 0.0625, 3, 5), 'rule 0: value 0.062 > threshold 54; 3 -> 5');
  assert.equal(scaleReason(rules, 1, -0, 3, 2), 'rule 1: value -0.000 < threshold 60; 3 -> 2');
  assert.equal(scaleReason(rules, 2, 12.3456, 3, 2), 'rule 2: value 12.346 < threshold 1000000000000000000000; 3 -> 2');
  assert.equal(atLimitMessage(1, 2.0625), 'rule 1 fired at 2.062 but replicas are at its limit');
});

test('the cooldown starts only where a change was applied', () => {
  const api = { kind: 'deployment', namespace: 'web', name: 'api' };
  const other = { kind: 'deployment', namespace: 'web', name: 'other' };
  const outcome = (at, target, current, applied, error) => ({
    at,
    scales: [{ target, current, requested: applied, applied, adjustments: [], error }],
    powers: [],
  });
  assert.equal(pendingApplied(1000n, outcome(1000n, api, 2, 4, undefined), api), true);
  assert.equal(pendingApplied(1000n, outcome(1000n, api, 2, 2, 'forbidden'), api), false);
  assert.equal(pendingApplied(1000n, outcome(1000n, api, 4, 4, undefined), api), false);
  assert.equal(pendingApplied(1000n, outcome(1000n, other, 2, 4, undefined), api), false);
  assert.equal(pendingApplied(1000n, undefined, api), true);
  assert.equal(pendingApplied(1000n, outcome(2000n, api, 2, 2, undefined), api), true);
});
