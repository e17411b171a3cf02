// Number formatting that matches Rust's `format!` for f64 byte for byte.
//
// The reason strings this policy writes must be identical to the Rust plugin's, and JavaScript's
// own formatting differs from Rust's in three ways that matter here:
// - `toFixed(3)` rounds exact binary ties up (0.0625 -> "0.063"); Rust rounds them to even ("0.062");
// - `String(x)` switches to exponent notation below 1e-6 and from 1e21 on; Rust never does;
// - `String(-0)` is "0"; Rust prints "-0" (and "-0.000" for `{:.3}`).

/** Splits a finite double into an exact `mantissa * 2 ** exponent` with a BigInt mantissa. */
function exactBinary(x) {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const bits = view.getBigUint64(0);
  const biased = Number(bits >> 52n);
  const fraction = bits & ((1n << 52n) - 1n);
  return biased === 0
    ? { mantissa: fraction, exponent: -1074 } // subnormal
    : { mantissa: fraction | (1n << 52n), exponent: biased - 1075 };
}

/** Rust's name for a non-finite double, or `undefined` for a finite one. */
function nonFinite(x) {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  return undefined;
}

/** True for negative numbers and for -0, which Rust prints with a sign. */
const signBit = (x) => x < 0 || Object.is(x, -0);

/**
 * Rust's `format!("{:.N}", x)`: exactly `decimals` decimals, correctly rounded from the exact binary
 * value, with exact ties rounded to even. Computed with BigInt, so it is exact for any double.
 */
export function toFixedRust(x, decimals = 3) {
  const special = nonFinite(x);
  if (special !== undefined) return special;
  const { mantissa, exponent } = exactBinary(x);
  const scaled = mantissa * 10n ** BigInt(decimals);
  let units; // |x| * 10^decimals, rounded to an integer
  if (exponent >= 0) {
    units = scaled << BigInt(exponent);
  } else {
    const divisor = 1n << BigInt(-exponent);
    units = scaled / divisor;
    const twiceRemainder = 2n * (scaled % divisor);
    if (twiceRemainder > divisor || (twiceRemainder === divisor && units % 2n === 1n)) units += 1n;
  }
  const digits = units.toString().padStart(decimals + 1, '0');
  const integral = digits.slice(0, digits.length - decimals);
  const fractional = decimals > 0 ? `.${digits.slice(digits.length - decimals)}` : '';
  return `${signBit(x) ? '-' : ''}${integral}${fractional}`;
}

/**
 * The shortest decimal digits that round-trip to |x| (finite, non-zero), as
 * `{ digits, point }`: |x| ~= 0.<digits> * 10^point. Rust and JavaScript agree on the length
 * and on the closest candidate, but when two candidates are exactly as close, Rust's Grisu/Dragon
 * takes the one farther from zero and JavaScript engines take the even one
 * (1519614377979036.25: Rust "...036.3", V8 "...036.2"), so ties are settled here.
 */
function shortestDigits(x) {
  const magnitude = Math.abs(x);
  // String() gives e.g. "123.45", "0.000123", "1.5e-7" or "1e+21".
  const [coefficient, exponent = '0'] = String(magnitude).split('e');
  const [whole, fraction = ''] = coefficient.split('.');
  let digits = BigInt(whole + fraction); // drops leading zeros
  let scale = Number(exponent) - fraction.length; // magnitude ~= digits * 10^scale
  // Compare 2 * (|x| - candidate) with one unit of the last digit, all scaled to integers.
  const { mantissa, exponent: binary } = exactBinary(magnitude);
  const pow2 = 2n ** BigInt(Math.max(0, -binary));
  const pow10 = 10n ** BigInt(Math.max(0, -scale));
  const exact = mantissa * 2n ** BigInt(Math.max(0, binary)) * pow10;
  const unit = 10n ** BigInt(Math.max(0, scale)) * pow2;
  const candidate = digits * unit;
  if (2n * (exact - candidate) === unit && Number(`${digits + 1n}e${scale}`) === magnitude) {
    digits += 1n; // a tie below the exact value: Rust rounds it up
  }
  let text = digits.toString();
  const trailingZeros = text.length - text.replace(/0+$/, '').length;
  text = text.slice(0, text.length - trailingZeros);
  scale += trailingZeros;
  return { digits: text, point: text.length + scale };
}

/**
 * Rust's `format!("{}", x)` for an f64: the shortest digits that round-trip, always laid out in
 * plain positional notation, with no ".0" on integral values.
 */
export function displayRust(x) {
  const special = nonFinite(x);
  if (special !== undefined) return special;
  const sign = signBit(x) ? '-' : '';
  if (x === 0) return `${sign}0`;
  const { digits, point } = shortestDigits(x);
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  if (point >= digits.length) return `${sign}${digits}${'0'.repeat(point - digits.length)}`;
  return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
}
