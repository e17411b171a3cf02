// Reference vectors for rust-format.test.mjs: prints "<f64 bits in hex> <{:.3}> <{}>" for a
// fixed set of f64 values (edge cases, then pseudo-random ones), as Rust formats them.
//   rustc -O gen-rust-f64-format.rs && ./gen-rust-f64-format 160 > rust-f64-format.txt
use std::env;
fn main() {
    let n: usize = env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(300);
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
    let mut vals: Vec<f64> = vec![0.0, -0.0, 0.0625, 0.1875, 0.3125, 1.0625, -0.0625, 2.0625, 0.0005, 0.0015,
        0.0025, 1.0005, -0.0001, -0.0004999, 1e21, 1e22, 1e-7, 1e-6, 1.5e-6, 54.0, 0.8*75.0, 0.1+0.2,
        f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 5e-324, f64::MAX, f64::MIN_POSITIVE, 9007199254740993.0,
        18446744073709551615.0, 123456789012345680000.0, 999.9995, 999.9994999, 0.9995, 4.35, 2.675, 1.0e15, 1.0e16, 1.0e17,
        1519614377979036.25, -218884736464097.625, 2133930869289006.25, 955415643683216.25, 3.5200000000000005, 1.7600000000000002];
    for i in 0..n {
        let r = next();
        let v = match i % 5 {
            0 => f64::from_bits(r),                                  // any bit pattern
            1 => (r % 2_000_000) as f64 / 16.0 - 62500.0,            // exact ties at 3 decimals
            2 => ((r % 100_000_000) as f64) / 10f64.powi((r >> 40) as i32 % 8), // decimal-ish
            3 => f64::from_bits((r & 0x800F_FFFF_FFFF_FFFF) | (((r >> 52) % 120 + 960) << 52)), // exps near 2^-63..2^56
            _ => (r as f64) / ((next() % 1000 + 1) as f64),
        };
        vals.push(v);
    }
    for v in vals {
        println!("{:016x} {:.3} {}", v.to_bits(), v, v);
    }
}
