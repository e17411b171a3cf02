/*
 * rustfmt.h - formats doubles byte for byte as Rust's `format!` does, so that reasons and log
 * lines written by the C policy equal those of the Rust one.
 * Portable C11 (only snprintf/strtod), so it also builds natively for tests.
 */
#ifndef SCALEHOST_RUSTFMT_H
#define SCALEHOST_RUSTFMT_H

#include <stddef.h>

/* Large enough for any double in either format (the longest is about 330 bytes). */
#define RUSTFMT_MAX 512

/* Rust's `{}` (Display) for f64: the shortest decimal that reads back as `x`, written without
 * an exponent ("54", "0.1", "1000000000000000000000", "0.0000001"), "-0" for negative zero,
 * "inf", "-inf", "NaN". Returns `buf`. */
char *rustfmt_display(double x, char *buf, size_t size);

/* Rust's `{:.N}` for f64: exactly rounded to `decimals` places, ties to even ("0.062" for
 * 0.0625 with 3), "-0.000" for negative zero. Returns `buf`. */
char *rustfmt_fixed(double x, int decimals, char *buf, size_t size);

#endif
