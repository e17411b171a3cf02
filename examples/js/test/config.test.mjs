// Unit tests of config parsing and validate-config (run: npm test, offline). The expectations are
// what the Rust plugin's serde_json and `validate` do with the same text.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, isBlank, parseConfig, validate } from '../lib/config.js';
import { JsonNumber } from '../lib/serde-json.js';

const BASE = '"target": {"namespace": "web", "name": "api"}, "source": {"query": "x"}';
const RULE = '{"direction": "up", "threshold": 1, "step": {"by": 1}, "limit": 3}';
const config = (extra = '', rules = `[${RULE}]`) => `{${BASE}, "rules": ${rules}${extra}}`;
const withRule = (rule) => config('', `[${rule}]`);

/** Asserts that parsing fails with an "invalid config: " error. */
function refused(json, pattern) {
  assert.throws(
    () => parseConfig(json),
    (e) => e instanceof ConfigError && e.message.startsWith('invalid config: ') && (!pattern || pattern.test(e.message)),
    json,
  );
}

/** The message validate() throws, or undefined. */
function problem(json) {
  try {
    validate(parseConfig(json));
    return undefined;
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.payload, e.message); // what the component returns as the err string
    return e.message;
  }
}

test('parses both sources, with defaults', () => {
  const c = parseConfig(`{"target": {"namespace": "web", "name": "api"},
      "source": {"events": {"service": "web/api/requests"}},
      "rules": [{"direction": "up", "threshold": 500, "step": {"by": 1}, "limit": 10},
                {"direction": "down", "threshold": 100, "step": {"to": 2}, "limit": 2}]}`);
  assert.deepEqual(c.target, { kind: 'deployment', namespace: 'web', name: 'api' });
  assert.deepEqual(c.source, { events: { service: 'web/api/requests' } });
  assert.equal(c.windowSecs, 60n);
  assert.equal(c.cooldownSecs, 120n);
  assert.deepEqual(c.rules[1], { direction: 'down', threshold: 100, step: { to: 2 }, limit: 2 });
  assert.equal(problem(JSON.stringify(JSON.parse(config()))), undefined);

  const q = parseConfig(`{"target": {"kind": "stateful-set", "namespace": "web", "name": "api"},
      "source": {"query": "x"}, "window_secs": 30, "cooldown_secs": 0,
      "rules": [{"direction": "up", "threshold": 1.5, "step": {"by": 1}, "limit": 3}]}`);
  assert.deepEqual(q.source, { query: 'x' });
  assert.equal(q.target.kind, 'stateful-set');
  assert.equal(q.windowSecs, 30n);
  assert.equal(q.cooldownSecs, 0n);
});

test('refuses unknown fields at every level', () => {
  refused(config(', "extra": 1'), /unknown field `extra`/);
  refused(config().replace('"name": "api"', '"name": "api", "x": 1'));
  refused(config().replace('{"query": "x"}', '{"events": {"service": "s", "x": 1}}'));
  refused(config().replace('{"query": "x"}', '{"logs": "x"}'), /unknown variant/);
  refused(withRule(RULE.replace('"limit": 3', '"limit": 3, "x": 0')));
  refused(withRule(RULE.replace('{"by": 1}', '{"by": 1, "x": 0}')));
  refused(withRule(RULE.replace('{"by": 1}', '{"up": 1}')));
});

test('integers must be written as integers and fit their Rust type', () => {
  for (const limit of ['1.0', '1e0', '-0', '-1', '4294967296', '"3"', 'null', 'true', '1.5']) {
    refused(withRule(RULE.replace('"limit": 3', `"limit": ${limit}`)));
  }
  assert.equal(parseConfig(withRule(RULE.replace('"limit": 3', '"limit": 4294967295'))).rules[0].limit, 4294967295);
  for (const by of ['2147483648', '1.0', '-0']) refused(withRule(RULE.replace('"by": 1', `"by": ${by}`)));
  const lowest = parseConfig(withRule(RULE.replace('"by": 1', '"by": -2147483648')));
  assert.deepEqual(lowest.rules[0].step, { by: -2147483648 });
  // u64 stays exact past 2^53.
  assert.equal(parseConfig(config(', "window_secs": 18446744073709551615')).windowSecs, 2n ** 64n - 1n);
  refused(config(', "window_secs": 18446744073709551616'));
  refused(config(', "cooldown_secs": 60.0'));
});

test('thresholds take any JSON number, read as serde_json reads them', () => {
  const threshold = (text) => parseConfig(withRule(RULE.replace('"threshold": 1', `"threshold": ${text}`))).rules[0].threshold;
  assert.equal(threshold('54'), 54);
  assert.equal(threshold('-5'), -5);
  assert.ok(Object.is(threshold('-0'), -0));
  assert.ok(Object.is(threshold('-0.0'), -0));
  assert.equal(threshold('1E-7'), 1e-7);
  assert.equal(threshold('1e-400'), 0);
  assert.equal(threshold('18446744073709551615'), 2 ** 64);
  // serde_json without float_roundtrip computes significand / 10^k: one ulp off here.
  assert.equal(threshold('1.0216145223412165e2'), 102.16145223412164);
  assert.equal(Number('1.0216145223412165e2'), 102.16145223412165);
  assert.equal(threshold('123456789012345678901234'), 1.2345678901234567e23);
  refused(withRule(RULE.replace('"threshold": 1', '"threshold": 1e400')), /out of range/);
  refused(withRule(RULE.replace('"threshold": 1', '"threshold": "1"')));
  refused(withRule(RULE.replace('"threshold": 1', '"threshold": NaN')));
});

test('JsonNumber classifies integers as serde_json does', () => {
  const kind = (text) => new JsonNumber(text).classify().kind;
  assert.equal(kind('0'), 'u64');
  assert.equal(kind('18446744073709551615'), 'u64');
  assert.equal(kind('18446744073709551616'), 'f64');
  assert.equal(kind('-9223372036854775808'), 'i64');
  assert.equal(kind('-9223372036854775809'), 'f64');
  assert.equal(kind('-0'), 'f64');
  assert.equal(kind('1.0'), 'f64');
});

test('accepts the other spellings serde accepts', () => {
  // A struct as an array of its fields in declaration order, trailing defaults optional.
  const arrays = parseConfig('[["deployment", "web", "api"], {"events": ["s"]}, 30, [["down", 5, {"to": 1}, 1]]]');
  assert.deepEqual(arrays.target, { kind: 'deployment', namespace: 'web', name: 'api' });
  assert.deepEqual(arrays.source, { events: { service: 's' } });
  assert.equal(arrays.cooldownSecs, 120n);
  assert.deepEqual(arrays.rules[0], { direction: 'down', threshold: 5, step: { to: 1 }, limit: 1 });
  refused('[["web", "api"], {"query": "q"}, 30, []]'); // "web" is no workload kind
  refused('[["deployment", "web", "api"], {"query": "q"}]'); // rules missing
  // A unit variant as a one-key object with a null value.
  assert.equal(parseConfig(withRule(RULE.replace('"up"', '{"up": null}'))).rules[0].direction, 'up');
  refused(withRule(RULE.replace('"up"', '{"up": 1}')));
  // Whitespace and escapes.
  assert.equal(parseConfig(`\n\t ${config().replace('"name"', '"n\\u0061me"')} \r\n`).target.name, 'api');
});

test('refuses what serde_json refuses while reading', () => {
  refused(config().replace('"name": "api"', '"name": "api", "name": "api"'), /duplicate field/);
  refused(config().replace('{"query": "x"}', '{"query": "x", "events": {"service": "s"}}'));
  refused(config().replace('{"query": "x"}', '{}'));
  refused(config().replace('{"query": "x"}', '"query"'));
  refused(config().replace('"x"', '"\\ud800"'));
  refused(config().replace('"x"', '"\\udc00"'));
  refused(config().replace('"x"', '"a\tb"'));
  refused(config().replace('"x"', '"\\q"'));
  refused(`${config()},`);
  refused(config().replace('3}]', '3},]'));
  refused(config().replace('"limit": 3', '"limit": 03'));
  refused(`\ufeff${config()}`);
  refused(`${'['.repeat(200)}${']'.repeat(200)}`, /recursion limit/);
  refused('');
  assert.equal(parseConfig(config().replace('"x"', '"\\ud83d\\ude00"')).source.query, '\u{1F600}');
});

test('validate: the Rust checks, messages and order', () => {
  assert.equal(problem(config().replace('"namespace": "web"', '"namespace": ""')), 'target must name a namespace and a workload');
  assert.equal(problem(config().replace('"name": "api"', '"name": ""')), 'target must name a namespace and a workload');
  assert.equal(problem(config().replace('{"query": "x"}', '{"events": {"service": ""}}')), 'source.events.service must not be empty');
  assert.equal(problem(config().replace('"x"', '" \\t\\n\\u0085\\u3000"')), 'source.query must not be empty');
  assert.equal(problem(config().replace('"x"', '"\\ufeff"')), undefined); // not whitespace to Rust
  assert.equal(problem(config(', "window_secs": 0')), 'window_secs must be at least 1');
  assert.equal(problem(config('', '[]')), 'rules must not be empty');
  assert.equal(problem(withRule(RULE.replace('"by": 1', '"by": 0'))), 'rules[0].step.by must be positive for an up rule');
  assert.equal(
    problem(config('', `[${RULE}, {"direction": "down", "threshold": 1, "step": {"by": 1}, "limit": 3}]`)),
    'rules[1].step.by must be negative for a down rule',
  );
  // Order: the target is checked before the rules.
  assert.equal(problem(config('', '[]').replace('"name": "api"', '"name": ""')), 'target must name a namespace and a workload');
  // JSON cannot spell a non-finite threshold; the check still runs first for each rule.
  const c = parseConfig(withRule(RULE.replace('"by": 1', '"by": -1')));
  c.rules[0].threshold = NaN;
  assert.throws(() => validate(c), { message: 'rules[0].threshold must be finite' });
});

test('isBlank is Rust trim().is_empty()', () => {
  assert.ok(isBlank(''));
  assert.ok(isBlank(' \t\n\r\v\f\u0085\u00a0\u2028\u3000'));
  assert.ok(!isBlank('\ufeff'));
  assert.ok(!isBlank(' x '));
});
