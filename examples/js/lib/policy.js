// The decision logic of threshold-cooldown, free of host calls so node can test it directly.

import { displayRust, toFixedRust } from './rust-format.js';

const U64_MAX = 2n ** 64n - 1n;
const U32_MAX = 2 ** 32 - 1;

/** u64 arithmetic saturates in the Rust plugin; BigInt does not, so clamp. */
export const saturatingAdd = (a, b) => (a + b > U64_MAX ? U64_MAX : a + b);
export const saturatingSub = (a, b) => (a > b ? a - b : 0n);
export const secsToMs = (secs) => (secs * 1000n > U64_MAX ? U64_MAX : secs * 1000n);

/**
 * The per-host window sum: every sample of every series added up, divided by the number of series
 * that reported at least one sample; `undefined` when none did. The additions run in the Rust
 * plugin's order (each series' samples, then the series' sums) and start from -0, as Rust's
 * `f64: Sum` does, so the result is the same double down to the sign of a zero.
 */
export function perHostValue(series) {
  const reporting = series.filter((s) => s.samples.length > 0).length;
  if (reporting === 0) return undefined;
  const sum = series
    .map((s) => s.samples.reduce((acc, sample) => acc + sample.value, -0))
    .reduce((acc, seriesSum) => acc + seriesSum, -0);
  return sum / reporting;
}

/** True while the cooldown that started at `lastScaleMs` (BigInt or undefined) still runs. */
export const inCooldown = (lastScaleMs, nowMs, cooldownSecs) =>
  lastScaleMs !== undefined && nowMs < saturatingAdd(lastScaleMs, secsToMs(cooldownSecs));

/**
 * Applies the first rule that fires at `value` with `current` replicas:
 * - `{ kind: 'none' }` when no rule fires;
 * - `{ kind: 'at-limit', index }` when it fires but would not move replicas its way;
 * - `{ kind: 'scale', index, replicas }` otherwise.
 * An up rule never lowers replicas nor goes above its limit; a down rule the reverse.
 */
export function decide(rules, value, current) {
  const index = rules.findIndex((r) => (r.direction === 'up' ? value > r.threshold : value < r.threshold));
  if (index < 0) return { kind: 'none' };
  const { direction, step, limit } = rules[index];
  const stepped = 'by' in step ? Math.min(Math.max(current + step.by, 0), U32_MAX) : step.to;
  const wanted = direction === 'up' ? Math.min(stepped, limit) : Math.max(stepped, limit);
  const movesItsWay = direction === 'up' ? wanted > current : wanted < current;
  return movesItsWay ? { kind: 'scale', index, replicas: wanted } : { kind: 'at-limit', index };
}

/** The audit reason of a scale, byte-identical to the Rust plugin's. */
export function scaleReason(rules, index, value, current, replicas) {
  const { direction, threshold } = rules[index];
  const comparison = direction === 'up' ? '>' : '<';
  return `rule ${index}: value ${toFixedRust(value, 3)} ${comparison} threshold ${displayRust(threshold)}; ${current} -> ${replicas}`;
}

/** The debug line when the firing rule is already at its limit. */
export const atLimitMessage = (index, value) =>
  `rule ${index} fired at ${toFixedRust(value, 3)} but replicas are at its limit`;

/**
 * Whether the scale asked for at `pendingMs` (BigInt) changed `target`, from `previous`, the
 * outcomes of the binding's last applied tick (`undefined` after a host restart). Without them,
 * or when they are another tick's, it is assumed applied: a cooldown too many is safer than a
 * scale too many.
 */
export function pendingApplied(pendingMs, previous, target) {
  if (previous === undefined || previous === null || previous.at !== pendingMs) return true;
  return previous.scales.some(
    (s) =>
      s.target.kind === target.kind &&
      s.target.namespace === target.namespace &&
      s.target.name === target.name &&
      (s.error === undefined || s.error === null) &&
      s.applied !== s.current,
  );
}

/** The last scale instant as stored in state: u64 milliseconds, 8 bytes little-endian. */
export function encodeLastScale(ms) {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, ms, true);
  return bytes;
}

/** Reads the stored last scale instant; `undefined` if absent or not exactly 8 bytes. */
export function decodeLastScale(bytes) {
  if (bytes == null || bytes.length !== 8) return undefined;
  return new DataView(Uint8Array.from(bytes).buffer).getBigUint64(0, true);
}
