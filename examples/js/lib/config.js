// The threshold-cooldown configuration: decoding from JSON and the checks of `validate-config`.
//
// The schema and every rule of acceptance follow the Rust plugin (plugins/threshold-cooldown), whose
// config is a serde struct with `deny_unknown_fields`: unknown fields are refused at every level,
// integers must be written as integers and fit their Rust type, enums are externally tagged.
// serde also accepts a struct written as an array of its fields in declaration order, and a unit
// variant written as `{"up": null}`; so does this decoder, so both plugins take the same configs.

import { JsonError, JsonNumber, parseJson } from './serde-json.js';

/** A configuration that cannot be used; the message is what `validate-config` reports. */
export class ConfigError extends Error {
  constructor(message) {
    super(message);
    // The component bindings turn a thrown value's own `payload` into the `err` of the result.
    this.payload = message;
  }
}

/**
 * Parses the binding's JSON configuration into
 * `{ target, source, windowSecs, cooldownSecs, rules }` (u64 fields as BigInt, see README).
 * Throws `ConfigError("invalid config: ...")` for anything the Rust plugin's serde refuses.
 */
export function parseConfig(json) {
  try {
    return decodeConfig(parseJson(json), 'config');
  } catch (error) {
    if (error instanceof JsonError || error instanceof DecodeError) {
      throw new ConfigError(`invalid config: ${error.message}`);
    }
    throw error; // a bug, not a bad config: let it trap
  }
}

/**
 * Checks a parsed configuration beyond its types: the same checks, messages and order as the Rust
 * plugin's `validate`. Throws `ConfigError` for the first problem found.
 */
export function validate(config) {
  const { target, source, windowSecs, rules } = config;
  if (target.namespace === '' || target.name === '') {
    throw new ConfigError('target must name a namespace and a workload');
  }
  if ('events' in source && source.events.service === '') {
    throw new ConfigError('source.events.service must not be empty');
  }
  if ('query' in source && isBlank(source.query)) {
    throw new ConfigError('source.query must not be empty');
  }
  if (windowSecs === 0n) throw new ConfigError('window_secs must be at least 1');
  if (rules.length === 0) throw new ConfigError('rules must not be empty');
  rules.forEach((rule, i) => {
    if (!Number.isFinite(rule.threshold)) {
      throw new ConfigError(`rules[${i}].threshold must be finite`);
    }
    if (rule.direction === 'up' && 'by' in rule.step && rule.step.by <= 0) {
      throw new ConfigError(`rules[${i}].step.by must be positive for an up rule`);
    }
    if (rule.direction === 'down' && 'by' in rule.step && rule.step.by >= 0) {
      throw new ConfigError(`rules[${i}].step.by must be negative for a down rule`);
    }
  });
}

/**
 * Rust's `str::trim().is_empty()`: blank in Unicode's White_Space sense, which is not JavaScript's
 * `trim()` (that also strips U+FEFF and keeps U+0085).
 */
export const isBlank = (text) =>
  /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/.test(text);

// ---- Decoders, one per Rust type. Each takes the parsed JSON value and where it sits. ----

/** Thrown by the decoders; `parseConfig` prefixes "invalid config: ". */
class DecodeError extends Error {}

const decodeConfig = (value, path) => {
  const c = decodeStruct(value, path, [
    ['target', decodeTarget],
    ['source', decodeSource],
    ['window_secs', decodeU64, () => 60n],
    ['rules', (v, p) => decodeList(v, p, decodeRule)],
    ['cooldown_secs', decodeU64, () => 120n],
  ]);
  return {
    target: c.target,
    source: c.source,
    windowSecs: c.window_secs,
    cooldownSecs: c.cooldown_secs,
    rules: c.rules,
  };
};

// Shaped as the WIT `workload-ref` record, so it goes to the host as is.
const decodeTarget = (value, path) =>
  decodeStruct(value, path, [
    ['kind', (v, p) => decodeEnum(v, p, { deployment: null, 'stateful-set': null }).tag, () => 'deployment'],
    ['namespace', decodeString],
    ['name', decodeString],
  ]);

// `{ events: { service } }` or `{ query }`, as in the JSON.
const decodeSource = (value, path) => {
  const { tag, payload } = decodeEnum(value, path, {
    events: (v, p) => decodeStruct(v, p, [['service', decodeString]]),
    query: decodeString,
  });
  return { [tag]: payload };
};

const decodeRule = (value, path) =>
  decodeStruct(value, path, [
    ['direction', (v, p) => decodeEnum(v, p, { up: null, down: null }).tag],
    ['threshold', decodeF64],
    ['step', decodeStep],
    ['limit', decodeU32],
  ]);

// `{ by }` or `{ to }`, as in the JSON.
const decodeStep = (value, path) => {
  const { tag, payload } = decodeEnum(value, path, { by: decodeI32, to: decodeU32 });
  return { [tag]: payload };
};

/**
 * A serde struct with `deny_unknown_fields`. `fields` lists `[name, decode, default?]` in
 * declaration order (the order of the array form). Returns an object keyed by field name.
 */
function decodeStruct(value, path, fields) {
  const out = {};
  if (Array.isArray(value)) {
    fields.forEach(([name, decode, fallback], i) => {
      if (i < value.length) out[name] = decode(value[i], `${path}.${name}`);
      else if (fallback) out[name] = fallback();
      else throw new DecodeError(`invalid length ${value.length} at ${path}, expected ${fields.length} fields`);
    });
    if (value.length > fields.length) {
      throw new DecodeError(`trailing elements at ${path}, expected ${fields.length} fields`);
    }
    return out;
  }
  if (!(value instanceof Map)) throw invalidType(value, `a struct at ${path}`);
  for (const [key, field] of value) {
    const spec = fields.find(([name]) => name === key);
    if (!spec) {
      const known = fields.map(([name]) => `\`${name}\``).join(', ');
      throw new DecodeError(`unknown field \`${key}\` at ${path}, expected one of ${known}`);
    }
    out[key] = spec[1](field, `${path}.${key}`);
  }
  for (const [name, , fallback] of fields) {
    if (name in out) continue;
    if (!fallback) throw new DecodeError(`missing field \`${name}\` at ${path}`);
    out[name] = fallback();
  }
  return out;
}

/**
 * An externally tagged serde enum: `"variant"` for a unit variant (also `{"variant": null}`),
 * `{"variant": payload}` otherwise. `variants` maps each name to its payload decoder, or `null`
 * for a unit variant. Returns `{ tag, payload }`.
 */
function decodeEnum(value, path, variants) {
  let tag;
  let payload;
  if (typeof value === 'string') {
    tag = value;
  } else if (value instanceof Map && value.size === 1) {
    [[tag, payload]] = value;
  } else {
    throw invalidType(value, `a string or an object with one key at ${path}`);
  }
  if (!Object.hasOwn(variants, tag)) {
    const known = Object.keys(variants).map((name) => `\`${name}\``).join(', ');
    throw new DecodeError(`unknown variant \`${tag}\` at ${path}, expected one of ${known}`);
  }
  const decode = variants[tag];
  if (decode === null) {
    if (payload !== undefined && payload !== null) throw invalidType(payload, `null at ${path}.${tag}`);
    return { tag };
  }
  if (payload === undefined) throw new DecodeError(`\`${tag}\` at ${path} needs a value: {"${tag}": ...}`);
  return { tag, payload: decode(payload, `${path}.${tag}`) };
}

function decodeList(value, path, decodeItem) {
  if (!Array.isArray(value)) throw invalidType(value, `a list at ${path}`);
  return value.map((item, i) => decodeItem(item, `${path}[${i}]`));
}

function decodeString(value, path) {
  if (typeof value !== 'string') throw invalidType(value, `a string at ${path}`);
  return value;
}

function decodeF64(value, path) {
  if (!(value instanceof JsonNumber)) throw invalidType(value, `a number at ${path}`);
  return value.toFloat();
}

/** An integer that must be written as one (no `1.0`) and fit [min, max]; returns a BigInt. */
function decodeInteger(value, path, type, min, max) {
  if (!(value instanceof JsonNumber)) throw invalidType(value, `${type} at ${path}`);
  const { kind, value: n } = value.classify();
  if (kind === 'f64') throw new DecodeError(`invalid type: floating point \`${value.text}\`, expected ${type} at ${path}`);
  if (n < min || n > max) throw new DecodeError(`invalid value: integer \`${n}\`, expected ${type} at ${path}`);
  return n;
}

const decodeU64 = (value, path) => decodeInteger(value, path, 'u64', 0n, 2n ** 64n - 1n);
const decodeU32 = (value, path) => Number(decodeInteger(value, path, 'u32', 0n, 2n ** 32n - 1n));
const decodeI32 = (value, path) => Number(decodeInteger(value, path, 'i32', -(2n ** 31n), 2n ** 31n - 1n));

function invalidType(value, expected) {
  let found;
  if (value === null) found = 'null';
  else if (typeof value === 'boolean') found = `boolean \`${value}\``;
  else if (typeof value === 'string') found = `string ${JSON.stringify(value)}`;
  else if (value instanceof JsonNumber) found = `number \`${value.text}\``;
  else if (Array.isArray(value)) found = 'sequence';
  else found = 'map';
  return new DecodeError(`invalid type: ${found}, expected ${expected}`);
}
