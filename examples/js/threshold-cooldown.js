// threshold-cooldown in JavaScript: Cloudify's Riemann "scale" policy as a scalehost component.
//
// Each tick reads a per-host window sum of a metric (the sum of every sample in the window divided
// by the number of reporting hosts), fires the first rule whose threshold is crossed, clamps the
// result to the rule's limit, and then stays quiet for `cooldown_secs` from the tick whose change
// the host applied (read back through `outcomes` at the next tick). It behaves tick for tick
// like the Rust plugin in plugins/threshold-cooldown (same host calls in the same order, same
// reasons and log lines); the config schema is in that plugin's README.
//
// This file is the component's entry: it exports the world's `validate-config` and `tick` and is
// the only module that talks to the host. The logic lives in ./lib, which node can test.

import { events, queryRange, workload } from 'scalehost:policy/metrics@0.2.0';
import { scale } from 'scalehost:policy/actuation@0.2.0';
import * as state from 'scalehost:policy/state@0.2.0';
import { log } from 'scalehost:policy/log@0.2.0';
import { now } from 'scalehost:policy/clock@0.2.0';
import { previous } from 'scalehost:policy/outcomes@0.2.0';

import { parseConfig, validate } from './lib/config.js';
import {
  atLimitMessage,
  decide,
  decodeLastScale,
  encodeLastScale,
  inCooldown,
  pendingApplied,
  perHostValue,
  saturatingSub,
  scaleReason,
  secsToMs,
} from './lib/policy.js';

/** State key of the last applied scale's instant (host milliseconds, u64 little-endian). */
const LAST_SCALE_KEY = 'last_scale_ms';
/** State key of a scale asked for and not yet known applied (same encoding). */
const PENDING_KEY = 'pending_scale_ms';

/** Resolution of the range query for a `query` source, in milliseconds. */
const QUERY_STEP_MS = 15_000n;

/**
 * The most replicas a scale intent can carry from this component. componentize-js 0.23 passes
 * a u32 import argument of 2^31 or more as the low bits of a double (4294967294 arrives as
 * 4290772992, 2^31 as 0), so larger counts are capped here instead of sent garbled. No binding
 * has a max_replicas that high, and the host caps every intent at max_replicas anyway.
 */
const MAX_SENDABLE_REPLICAS = 2 ** 31 - 1;

/** How the Rust SDK's `HostError` prints each case of the WIT `host-error`. */
const HOST_ERROR_PREFIX = {
  forbidden: 'forbidden',
  'not-found': 'not found',
  invalid: 'invalid',
  unavailable: 'unavailable',
};

/** What a failed host call fails the tick with: "not found: <message>" and so on. */
class HostCallError extends Error {
  constructor({ tag, val }) {
    super(`${HOST_ERROR_PREFIX[tag] ?? tag}: ${val}`);
    this.payload = this.message; // becomes the `err` string of the export's result
  }
}

/**
 * Calls a host function that returns `result<T, host-error>`. The bindings throw the error as an
 * exception whose `payload` is the `host-error` variant; turn it into the tick's error message.
 */
function host(call, ...args) {
  try {
    return call(...args);
  } catch (error) {
    if (error?.payload?.tag !== undefined) throw new HostCallError(error.payload);
    throw error;
  }
}

/** `validate-config`: parses the config and checks it; a thrown `ConfigError` is the `err`. */
export function validateConfig(json) {
  validate(parseConfig(json));
}

/** `tick`: one decision. Intents recorded here are applied only if this returns normally. */
export function tick(json) {
  const config = parseConfig(json); // parsed again on every tick, not re-validated
  const nowMs = now();
  let lastScaleMs = decodeLastScale(state.get(LAST_SCALE_KEY));
  // The cooldown starts only where the host applied a change: settle the last intent.
  const pendingMs = decodeLastScale(state.get(PENDING_KEY));
  if (pendingMs !== undefined) {
    state.delete(PENDING_KEY);
    if (pendingApplied(pendingMs, previous(), config.target)) {
      lastScaleMs = pendingMs;
      state.set(LAST_SCALE_KEY, encodeLastScale(pendingMs));
    } else {
      log('info', 'the last scale was not applied; no cooldown');
    }
  }
  // Checked before any read so a cooling-down tick costs one state lookup.
  if (inCooldown(lastScaleMs, nowMs, config.cooldownSecs)) {
    log('debug', 'in cooldown');
    return;
  }

  const windowMs = secsToMs(config.windowSecs);
  const series =
    'events' in config.source
      ? host(events, config.source.events.service, windowMs)
      : host(queryRange, config.source.query, saturatingSub(nowMs, windowMs), nowMs, QUERY_STEP_MS);

  const value = perHostValue(series);
  if (value === undefined) {
    log('info', 'no hosts reporting in the window; no decision');
    return;
  }

  const current = host(workload, config.target).replicas;
  const decision = decide(config.rules, value, current);
  if (decision.kind === 'at-limit') {
    log('debug', atLimitMessage(decision.index, value));
  } else if (decision.kind === 'scale') {
    const reason = scaleReason(config.rules, decision.index, value, current, decision.replicas);
    const replicas = Math.min(decision.replicas, MAX_SENDABLE_REPLICAS);
    host(scale, config.target, { tag: 'to', val: replicas }, reason);
    state.set(PENDING_KEY, encodeLastScale(nowMs));
  }
}
