/*
 * rustfmt.c - Rust-compatible double formatting; see rustfmt.h.
 *
 * Both formats start from C's exact conversions: wasi-libc's (musl's) printf prints the exact
 * binary value to any number of digits and rounds ties to even, and its strtod is correctly
 * rounded. The shortest representation is then found by trying 1, 2, ... 17 significant
 * digits, as Rust's Grisu/Dragon4 formatter defines it.
 */
#include "rustfmt.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A positive decimal 0.d1d2d3... x 10^exp10, digits without trailing zeros. */
typedef struct {
    char digits[800]; /* a double has at most 767 significant decimal digits */
    int len;
    int exp10;
} decimal;

/* The exact decimal expansion of a finite, positive `x`. */
static void exact_decimal(double x, decimal *d) {
    char text[840];
    /* "%.766e" prints 767 significant digits: every digit of any double, then zeros. */
    snprintf(text, sizeof text, "%.766e", x);
    const char *e = strchr(text, 'e');
    d->len = 0;
    for (const char *c = text; c < e; c++) {
        if (*c != '.') {
            d->digits[d->len++] = *c;
        }
    }
    while (d->len > 1 && d->digits[d->len - 1] == '0') {
        d->len--;
    }
    d->digits[d->len] = '\0';
    d->exp10 = atoi(e + 1) + 1;
}

/* Whether the `len` digits `digits` x 10^exp10 (as 0.digits) read back as `x`. */
static bool reads_back(const char *digits, int len, int exp10, double x) {
    char text[48];
    snprintf(text, sizeof text, "0.%.*se%d", len, digits, exp10);
    return strtod(text, NULL) == x;
}

/* Shortens the exact expansion `d` of `x` to the fewest digits that still read back as `x`;
 * when both neighbours at that length do, the nearer one, and the upper one on a tie (as
 * Rust's Dragon4 does). */
static void shortest(double x, decimal *d) {
    for (int n = 1; n < d->len && n <= 17; n++) {
        /* `low` is the expansion cut to n digits, `high` the next n-digit decimal up. */
        char high[20];
        int high_exp = d->exp10;
        memcpy(high, d->digits, (size_t)n);
        int i = n - 1;
        while (i >= 0 && high[i] == '9') {
            high[i--] = '0';
        }
        if (i >= 0) {
            high[i]++;
        } else { /* 99..9 rounds up to 100..0 */
            high[0] = '1';
            memset(high + 1, '0', (size_t)(n - 1));
            high_exp++;
        }
        bool low_ok = reads_back(d->digits, n, d->exp10, x);
        bool high_ok = reads_back(high, n, high_exp, x);
        if (!low_ok && !high_ok) {
            continue;
        }
        /* The cut-off digits are nonzero; compare them with one half of the last digit. */
        const char *rest = d->digits + n;
        bool upper_is_nearer = rest[0] > '5' || (rest[0] == '5' && rest[1] != '\0');
        bool tie = rest[0] == '5' && rest[1] == '\0';
        if (high_ok && (!low_ok || upper_is_nearer || tie)) {
            memcpy(d->digits, high, (size_t)n);
            d->exp10 = high_exp;
        }
        d->len = n;
        while (d->len > 1 && d->digits[d->len - 1] == '0') {
            d->len--;
        }
        d->digits[d->len] = '\0';
        return;
    }
}

char *rustfmt_display(double x, char *buf, size_t size) {
    if (isnan(x)) {
        snprintf(buf, size, "NaN");
        return buf;
    }
    const char *sign = signbit(x) ? "-" : "";
    if (isinf(x)) {
        snprintf(buf, size, "%sinf", sign);
        return buf;
    }
    if (x == 0.0) {
        snprintf(buf, size, "%s0", sign);
        return buf;
    }
    decimal d;
    exact_decimal(fabs(x), &d);
    shortest(fabs(x), &d);

    /* Positional notation of 0.digits x 10^exp10, never an exponent. */
    char *at = buf, *last = buf + size - 1;
#define PUT(c) (at < last ? (void)(*at++ = (c)) : (void)0)
    if (*sign) {
        PUT('-');
    }
    if (d.exp10 <= 0) {
        PUT('0');
        PUT('.');
        for (int i = 0; i < -d.exp10; i++) {
            PUT('0');
        }
        for (int i = 0; i < d.len; i++) {
            PUT(d.digits[i]);
        }
    } else {
        for (int i = 0; i < d.len || i < d.exp10; i++) {
            if (i == d.exp10) {
                PUT('.');
            }
            PUT(i < d.len ? d.digits[i] : '0');
        }
    }
#undef PUT
    *at = '\0';
    return buf;
}

char *rustfmt_fixed(double x, int decimals, char *buf, size_t size) {
    if (isnan(x)) {
        snprintf(buf, size, "NaN");
    } else {
        /* musl prints the exact value rounded half to even, "inf", "-inf", "-0.000". */
        snprintf(buf, size, "%.*f", decimals, x);
    }
    return buf;
}
