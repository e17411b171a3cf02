// A strict JSON reader that accepts exactly what the Rust plugin's serde_json accepts.
//
// JSON.parse is not enough for that: it loses the spelling of numbers (serde refuses `1.0` and `-0`
// where an integer is expected, and u64 values above 2^53 must stay exact), it keeps the last of
// duplicate keys (serde refuses a struct with a duplicate field), and it reads numbers with
// correctly rounded decimal conversion where serde_json (without its `float_roundtrip` feature)
// computes `significand as f64` times or divided by a power of ten. So this reader keeps
// numbers as `JsonNumber` (their source text) and objects as `Map`s, and `JsonNumber` converts
// the way serde_json does.

/** Thrown for any input serde_json would refuse; the message says where. */
export class JsonError extends Error {}

/** A JSON number, kept as written; converted on demand, as serde_json does for each Rust type. */
export class JsonNumber {
  constructor(text) {
    this.text = text;
  }

  /**
   * What serde_json makes of the number: `{ kind: 'u64' | 'i64', value: BigInt }` for an integer
   * that fits (a non-negative one as u64, a negative one as i64), otherwise
   * `{ kind: 'f64', value: Number }`. `-0` is a float to serde_json, and so are integers too large
   * for u64 / i64.
   */
  classify() {
    const { negative, whole, fraction, exponent } = parts(this.text);
    if (fraction === undefined && exponent === undefined) {
      const magnitude = BigInt(whole);
      if (!negative && magnitude <= U64_MAX) return { kind: 'u64', value: magnitude };
      if (negative && magnitude !== 0n && magnitude <= 2n ** 63n) return { kind: 'i64', value: -magnitude };
      if (negative && magnitude <= U64_MAX) return { kind: 'f64', value: -Number(magnitude) };
    }
    return { kind: 'f64', value: this.#serdeFloat() };
  }

  /** The number as an f64, as serde_json deserializes it into an `f64` field. */
  toFloat() {
    const { kind, value } = this.classify();
    return kind === 'f64' ? value : Number(value); // BigInt -> Number rounds like `as f64`
  }

  /**
   * serde_json's float path: gather up to u64::MAX worth of significand digits (further integer
   * digits only raise the exponent, further fraction digits are dropped), then scale by a table
   * power of ten. Rounds twice, hence not always the correctly rounded double.
   */
  #serdeFloat() {
    const { negative, whole, fraction = '', exponent } = parts(this.text);
    let significand = 0n;
    let scale = 0;
    let full = false;
    for (const digit of whole) {
      if (!full && !overflows(significand, digit)) significand = significand * 10n + BigInt(digit);
      else {
        full = true; // serde_json's parse_long_integer
        scale += 1;
      }
    }
    for (const digit of fraction) {
      if (overflows(significand, digit)) break; // serde_json's parse_decimal_overflow
      significand = significand * 10n + BigInt(digit);
      scale -= 1;
    }
    if (exponent !== undefined) {
      const [, sign, expDigits] = /^([+-]?)(\d+)$/.exec(exponent);
      let value = 0;
      for (const digit of expDigits) {
        if (value > I32_MAX_DIV_10 || (value === I32_MAX_DIV_10 && Number(digit) > 7)) {
          // The exponent overflows an i32: infinity is an error, zero keeps its sign.
          if (significand !== 0n && sign !== '-') throw new JsonError(`number out of range: ${this.text}`);
          return negative ? -0 : 0;
        }
        value = value * 10 + Number(digit);
      }
      scale = clampI32(sign === '-' ? scale - value : scale + value);
    }
    let float = Number(significand); // rounds like `u64 as f64`
    for (;;) {
      if (Math.abs(scale) <= 308) {
        if (scale >= 0) {
          float *= POW10[scale];
          if (!Number.isFinite(float)) throw new JsonError(`number out of range: ${this.text}`);
        } else {
          float /= POW10[-scale];
        }
        break;
      }
      if (float === 0) break;
      if (scale >= 0) throw new JsonError(`number out of range: ${this.text}`);
      float /= 1e308;
      scale += 308;
    }
    return negative ? -float : float;
  }
}

const U64_MAX = 2n ** 64n - 1n;
const I32_MAX = 2 ** 31 - 1;
const I32_MAX_DIV_10 = Math.floor(I32_MAX / 10);
const clampI32 = (n) => Math.min(I32_MAX, Math.max(-(2 ** 31), n));
// serde_json's table: each entry the double nearest 10^i, as a literal would give it.
const POW10 = Array.from({ length: 309 }, (_, i) => Number(`1e${i}`));

/** True if `significand * 10 + digit` would exceed u64::MAX (serde_json's `overflow!`). */
const overflows = (significand, digit) => significand * 10n + BigInt(digit) > U64_MAX;

/** Splits a number token (already checked against the JSON grammar) into its parts. */
function parts(text) {
  const [, minus, whole, fraction, exponent] = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  return { negative: minus === '-', whole, fraction, exponent };
}

/** serde_json nests at most 128 arrays and objects. */
const MAX_DEPTH = 128;

/**
 * Parses `text` into plain values: `Map` (objects, keys in order), `Array`, string, `JsonNumber`,
 * boolean, `null`. Throws `JsonError` on anything serde_json would refuse while reading, including
 * a duplicate key (every object in a config is a struct or an enum, and serde refuses a
 * duplicate field or a second variant).
 */
export function parseJson(text) {
  let pos = 0;

  const fail = (what) => {
    const before = text.slice(0, pos);
    const line = before.split('\n').length;
    const column = pos - before.lastIndexOf('\n');
    throw new JsonError(`${what} at line ${line} column ${column}`);
  };
  const skipWhitespace = () => {
    while (pos < text.length && ' \t\n\r'.includes(text[pos])) pos += 1;
  };
  const expect = (char) => {
    skipWhitespace();
    if (text[pos] !== char) fail(pos < text.length ? `expected \`${char}\`` : 'EOF while parsing');
    pos += 1;
  };

  function value(depth) {
    skipWhitespace();
    if (pos >= text.length) fail('EOF while parsing a value');
    const char = text[pos];
    if (char === '{' || char === '[') {
      if (depth >= MAX_DEPTH) fail('recursion limit exceeded');
      return char === '{' ? object(depth + 1) : array(depth + 1);
    }
    if (char === '"') return string();
    if (char === '-' || (char >= '0' && char <= '9')) return number();
    for (const [word, result] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, pos)) {
        pos += word.length;
        return result;
      }
    }
    return fail('expected value');
  }

  function object(depth) {
    pos += 1; // '{'
    const map = new Map();
    skipWhitespace();
    if (text[pos] === '}') {
      pos += 1;
      return map;
    }
    for (;;) {
      skipWhitespace();
      if (text[pos] !== '"') fail('key must be a string');
      const key = string();
      if (map.has(key)) fail(`duplicate field \`${key}\``);
      expect(':');
      map.set(key, value(depth));
      skipWhitespace();
      if (text[pos] === ',') pos += 1;
      else if (text[pos] === '}') {
        pos += 1;
        return map;
      } else fail('expected `,` or `}`');
    }
  }

  function array(depth) {
    pos += 1; // '['
    const items = [];
    skipWhitespace();
    if (text[pos] === ']') {
      pos += 1;
      return items;
    }
    for (;;) {
      items.push(value(depth));
      skipWhitespace();
      if (text[pos] === ',') pos += 1;
      else if (text[pos] === ']') {
        pos += 1;
        return items;
      } else fail('expected `,` or `]`');
    }
  }

  function string() {
    pos += 1; // opening quote
    let out = '';
    for (;;) {
      if (pos >= text.length) fail('EOF while parsing a string');
      const char = text[pos];
      pos += 1;
      if (char === '"') return out;
      if (char < ' ') fail('control character (\\u0000-\\u001F) found while parsing a string');
      if (char !== '\\') {
        out += char;
        continue;
      }
      const escape = text[pos];
      pos += 1;
      const simple = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }[escape];
      if (simple !== undefined) out += simple;
      else if (escape === 'u') out += unicodeEscape();
      else fail('invalid escape');
    }
  }

  // A \uXXXX escape; a surrogate must come as a leading + trailing pair, as Rust strings need.
  function unicodeEscape() {
    const unit = hex4();
    if (unit >= 0xdc00 && unit <= 0xdfff) fail('lone leading surrogate in hex escape');
    if (unit < 0xd800 || unit > 0xdbff) return String.fromCharCode(unit);
    if (text[pos] !== '\\' || text[pos + 1] !== 'u') fail('unexpected end of hex escape');
    pos += 2;
    const low = hex4();
    if (low < 0xdc00 || low > 0xdfff) fail('lone leading surrogate in hex escape');
    return String.fromCharCode(unit, low);
  }

  function hex4() {
    const digits = text.slice(pos, pos + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) fail('invalid escape');
    pos += 4;
    return parseInt(digits, 16);
  }

  function number() {
    const match = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(pos));
    if (!match) fail('invalid number');
    pos += match[0].length;
    // serde_json reads "01" as an error, not as 0 followed by 1.
    if (/^-?0\d/.test(text.slice(pos - match[0].length, pos + 1))) fail('invalid number');
    if (/^[.eE]/.test(text[pos] ?? '')) fail('invalid number');
    return new JsonNumber(match[0]);
  }

  const result = value(0);
  skipWhitespace();
  if (pos < text.length) fail('trailing characters');
  return result;
}
