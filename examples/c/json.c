/*
 * json.c - a small, strict recursive-descent JSON reader; see json.h.
 *
 * The grammar and the number handling follow serde_json 1.0 (without its `float_roundtrip`
 * feature) step by step, because the policy must accept and refuse exactly the configurations
 * the Rust build does, and read every threshold as the very same double.
 */
#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lets the compiler check the format strings of our printf-like helpers. */
#if defined(__GNUC__)
#define PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define PRINTF_LIKE(fmt, args)
#endif

/* serde_json refuses documents nested deeper than this. */
#define MAX_DEPTH 128

typedef struct {
    const char *s;
    size_t len;
    size_t pos;
    int depth_left;
    char *err;
    size_t err_size;
} parser;

static int peek(const parser *p) {
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static bool is_digit(int c) {
    return c >= '0' && c <= '9';
}

void json_position(const char *text, size_t len, size_t offset, char *buf, size_t buf_size) {
    size_t line = 1, line_start = 0;
    if (offset > len) {
        offset = len;
    }
    for (size_t i = 0; i < offset; i++) {
        if (text[i] == '\n') {
            line++;
            line_start = i + 1;
        }
    }
    snprintf(buf, buf_size, "line %zu column %zu", line, offset - line_start + 1);
}

/* Records "<message> at line L column C" for the byte at `at`; always returns false. */
PRINTF_LIKE(3, 4)
static bool fail_at(parser *p, size_t at, const char *fmt, ...) {
    char where[64];
    int n;
    va_list args;
    va_start(args, fmt);
    n = vsnprintf(p->err, p->err_size, fmt, args);
    va_end(args);
    if (n >= 0 && (size_t)n < p->err_size) {
        json_position(p->s, p->len, at, where, sizeof where);
        snprintf(p->err + n, p->err_size - (size_t)n, " at %s", where);
    }
    return false;
}

static bool fail(parser *p, const char *message) {
    return fail_at(p, p->pos, "%s", message);
}

static void skip_whitespace(parser *p) {
    for (;;) {
        int c = peek(p);
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return;
        }
        p->pos++;
    }
}

/* ---- growable buffers ------------------------------------------------------------------ */

/* Makes room for one more element of `size` bytes in the array `*items` holding `len`. */
static bool grow(void **items, size_t len, size_t *cap, size_t size) {
    if (len < *cap) {
        return true;
    }
    size_t new_cap = *cap ? *cap * 2 : 4;
    void *bigger = realloc(*items, new_cap * size);
    if (!bigger) {
        return false;
    }
    *items = bigger;
    *cap = new_cap;
    return true;
}

typedef struct {
    char *ptr;
    size_t len, cap;
} byte_buf;

static bool buf_push(byte_buf *b, const char *bytes, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t new_cap = b->cap ? b->cap : 16;
        while (new_cap < b->len + n + 1) {
            new_cap *= 2;
        }
        char *bigger = realloc(b->ptr, new_cap);
        if (!bigger) {
            return false;
        }
        b->ptr = bigger;
        b->cap = new_cap;
    }
    memcpy(b->ptr + b->len, bytes, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return true;
}

static bool buf_push_utf8(byte_buf *b, uint32_t cp) {
    char out[4];
    size_t n;
    if (cp < 0x80) {
        out[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return buf_push(b, out, n);
}

/* ---- strings --------------------------------------------------------------------------- */

static bool parse_hex4(parser *p, uint32_t *out) {
    uint32_t n = 0;
    for (int i = 0; i < 4; i++) {
        int c = peek(p);
        if (c < 0) {
            return fail(p, "EOF while parsing a string");
        }
        p->pos++;
        if (c >= '0' && c <= '9') {
            n = n * 16 + (uint32_t)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            n = n * 16 + (uint32_t)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            n = n * 16 + (uint32_t)(c - 'A' + 10);
        } else {
            return fail_at(p, p->pos - 1, "invalid escape");
        }
    }
    *out = n;
    return true;
}

/* After "\u": a BMP code point, or a surrogate pair written as two escapes. Lone surrogates
 * cannot become UTF-8, so they are refused. */
static bool parse_unicode_escape(parser *p, byte_buf *b) {
    uint32_t hi, lo;
    if (!parse_hex4(p, &hi)) {
        return false;
    }
    if (hi >= 0xDC00 && hi <= 0xDFFF) {
        return fail(p, "lone leading surrogate in hex escape");
    }
    if (hi < 0xD800 || hi > 0xDBFF) {
        return buf_push_utf8(b, hi) || fail(p, "out of memory");
    }
    if (peek(p) != '\\' || p->pos + 1 >= p->len || p->s[p->pos + 1] != 'u') {
        if (peek(p) < 0) {
            return fail(p, "EOF while parsing a string");
        }
        return fail(p, "unexpected end of hex escape");
    }
    p->pos += 2;
    if (!parse_hex4(p, &lo)) {
        return false;
    }
    if (lo < 0xDC00 || lo > 0xDFFF) {
        return fail(p, "lone leading surrogate in hex escape");
    }
    return buf_push_utf8(b, 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)) ||
           fail(p, "out of memory");
}

/* Parses a string whose opening quote is at p->pos. The input is UTF-8 already (the
 * component model guarantees it), so bytes >= 0x20 are copied as they are. */
static bool parse_string(parser *p, json_str *out) {
    byte_buf b = {0};
    p->pos++;
    if (!buf_push(&b, "", 0)) {
        return fail(p, "out of memory");
    }
    for (;;) {
        size_t start = p->pos;
        int c;
        while ((c = peek(p)) >= 0x20 && c != '"' && c != '\\') {
            p->pos++;
        }
        if (!buf_push(&b, p->s + start, p->pos - start)) {
            free(b.ptr);
            return fail(p, "out of memory");
        }
        if (c == '"') {
            p->pos++;
            out->ptr = b.ptr;
            out->len = b.len;
            return true;
        }
        if (c < 0) {
            free(b.ptr);
            return fail(p, "EOF while parsing a string");
        }
        if (c != '\\') {
            free(b.ptr);
            return fail_at(p, p->pos,
                           "control character (\\u0000-\\u001F) found while parsing a string");
        }
        p->pos++;
        c = peek(p);
        if (c < 0) {
            free(b.ptr);
            return fail(p, "EOF while parsing a string");
        }
        p->pos++;
        const char *simple = NULL;
        switch (c) {
        case '"': simple = "\""; break;
        case '\\': simple = "\\"; break;
        case '/': simple = "/"; break;
        case 'b': simple = "\b"; break;
        case 'f': simple = "\f"; break;
        case 'n': simple = "\n"; break;
        case 'r': simple = "\r"; break;
        case 't': simple = "\t"; break;
        case 'u':
            if (!parse_unicode_escape(p, &b)) {
                free(b.ptr);
                return false;
            }
            continue;
        default:
            free(b.ptr);
            return fail_at(p, p->pos - 1, "invalid escape");
        }
        if (!buf_push(&b, simple, 1)) {
            free(b.ptr);
            return fail(p, "out of memory");
        }
    }
}

/* ---- numbers ----------------------------------------------------------------------------
 * A port of serde_json's integer-first number parser: digits accumulate into a u64
 * significand and a decimal exponent; a float is then `significand * 10^exponent` computed
 * with one or two IEEE operations (not always the correctly rounded value, but the same value
 * serde_json produces, which is what matters here).
 */

/* True when `a * 10 + digit` would exceed `max` (serde_json's `overflow!`). */
static bool overflows_u64(uint64_t a, uint64_t digit) {
    return a >= UINT64_MAX / 10 && (a > UINT64_MAX / 10 || digit > UINT64_MAX % 10);
}

static bool overflows_i32(int32_t a, int32_t digit) {
    return a >= INT32_MAX / 10 && (a > INT32_MAX / 10 || digit > INT32_MAX % 10);
}

static int32_t saturate_i32(int64_t v) {
    return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
}

/* 10^n as the correctly rounded double, like the literal table serde_json uses. */
static double power_of_ten(int n) {
    char literal[8];
    snprintf(literal, sizeof literal, "1e%d", n);
    return strtod(literal, NULL);
}

static bool f64_from_parts(parser *p, bool positive, uint64_t significand, int32_t exponent,
                           double *out) {
    double f = (double)significand;
    for (;;) {
        /* |exponent|, with INT32_MIN kept out of the table like Rust's wrapping_abs. */
        uint32_t magnitude = exponent == INT32_MIN ? UINT32_MAX
                             : exponent < 0        ? (uint32_t)-exponent
                                                   : (uint32_t)exponent;
        if (magnitude <= 308) {
            double scale = power_of_ten((int)magnitude);
            if (exponent >= 0) {
                f *= scale;
                if (isinf(f)) {
                    return fail(p, "number out of range");
                }
            } else {
                f /= scale;
            }
            break;
        }
        if (f == 0.0) {
            break;
        }
        if (exponent >= 0) {
            return fail(p, "number out of range");
        }
        f /= 1e308;
        exponent += 308;
    }
    *out = positive ? f : -f;
    return true;
}

static bool parse_exponent(parser *p, bool positive, uint64_t significand, int32_t start_exp,
                           double *out) {
    bool positive_exp = true;
    int c;
    p->pos++; /* 'e' or 'E' */
    if (peek(p) == '+') {
        p->pos++;
    } else if (peek(p) == '-') {
        p->pos++;
        positive_exp = false;
    }
    c = peek(p);
    if (c < 0) {
        return fail(p, "EOF while parsing a value");
    }
    p->pos++;
    if (!is_digit(c)) {
        return fail(p, "invalid number");
    }
    int32_t exp = c - '0';
    while (is_digit(c = peek(p))) {
        p->pos++;
        if (overflows_i32(exp, c - '0')) {
            /* An enormous exponent: zero or an underflow to zero, else out of range. */
            if (significand != 0 && positive_exp) {
                return fail(p, "number out of range");
            }
            while (is_digit(peek(p))) {
                p->pos++;
            }
            *out = positive ? 0.0 : -0.0;
            return true;
        }
        exp = exp * 10 + (c - '0');
    }
    int32_t final_exp = saturate_i32(positive_exp ? (int64_t)start_exp + exp
                                                  : (int64_t)start_exp - exp);
    return f64_from_parts(p, positive, significand, final_exp, out);
}

static bool parse_decimal(parser *p, bool positive, uint64_t significand, int32_t exp_before,
                          double *out) {
    int64_t exp_after = 0;
    int c;
    p->pos++; /* '.' */
    while (is_digit(c = peek(p))) {
        uint64_t digit = (uint64_t)(c - '0');
        if (overflows_u64(significand, digit)) {
            /* The significand is full: the remaining digits are dropped. */
            int32_t exponent = saturate_i32((int64_t)exp_before + exp_after);
            while (is_digit(peek(p))) {
                p->pos++;
            }
            if (peek(p) == 'e' || peek(p) == 'E') {
                return parse_exponent(p, positive, significand, exponent, out);
            }
            return f64_from_parts(p, positive, significand, exponent, out);
        }
        p->pos++;
        significand = significand * 10 + digit;
        exp_after--;
    }
    if (exp_after == 0) {
        return fail(p, peek(p) < 0 ? "EOF while parsing a value" : "invalid number");
    }
    int32_t exponent = saturate_i32((int64_t)exp_before + exp_after);
    if (c == 'e' || c == 'E') {
        return parse_exponent(p, positive, significand, exponent, out);
    }
    return f64_from_parts(p, positive, significand, exponent, out);
}

/* An integer longer than a u64: further digits only scale it by ten each. */
static bool parse_long_integer(parser *p, bool positive, uint64_t significand, double *out) {
    int32_t exponent = 0;
    for (;;) {
        int c = peek(p);
        if (is_digit(c)) {
            p->pos++;
            if (exponent < INT32_MAX) {
                exponent++;
            }
        } else if (c == '.') {
            return parse_decimal(p, positive, significand, exponent, out);
        } else if (c == 'e' || c == 'E') {
            return parse_exponent(p, positive, significand, exponent, out);
        } else {
            return f64_from_parts(p, positive, significand, exponent, out);
        }
    }
}

static bool parse_number(parser *p, bool positive, json_value *v) {
    uint64_t significand = 0;
    int c = peek(p);
    v->type = JSON_NUMBER;
    v->u.number.kind = JSON_NUM_F64;
    if (c < 0) {
        return fail(p, "EOF while parsing a value");
    }
    p->pos++;
    if (c == '0') {
        /* There can be only one leading zero. */
        if (is_digit(peek(p))) {
            return fail(p, "invalid number");
        }
    } else if (c >= '1' && c <= '9') {
        significand = (uint64_t)(c - '0');
        while (is_digit(c = peek(p))) {
            uint64_t digit = (uint64_t)(c - '0');
            if (overflows_u64(significand, digit)) {
                return parse_long_integer(p, positive, significand, &v->u.number.as.f);
            }
            p->pos++;
            significand = significand * 10 + digit;
        }
    } else {
        return fail_at(p, p->pos - 1, "invalid number");
    }

    c = peek(p);
    if (c == '.') {
        return parse_decimal(p, positive, significand, 0, &v->u.number.as.f);
    }
    if (c == 'e' || c == 'E') {
        return parse_exponent(p, positive, significand, 0, &v->u.number.as.f);
    }
    if (positive) {
        v->u.number.kind = JSON_NUM_U64;
        v->u.number.as.u = significand;
    } else if (significand == 0 || significand > (uint64_t)INT64_MAX + 1) {
        /* `-0` and integers below i64::MIN are floats for serde_json. */
        v->u.number.as.f = -(double)significand;
    } else {
        v->u.number.kind = JSON_NUM_I64;
        v->u.number.as.i = significand == (uint64_t)INT64_MAX + 1 ? INT64_MIN
                                                                   : -(int64_t)significand;
    }
    return true;
}

/* ---- values ----------------------------------------------------------------------------- */

static bool parse_value(parser *p, json_value *v);

static bool parse_keyword(parser *p, const char *word) {
    for (const char *w = word; *w; w++) {
        int c = peek(p);
        if (c < 0) {
            return fail(p, "EOF while parsing a value");
        }
        p->pos++;
        if (c != (unsigned char)*w) {
            return fail_at(p, p->pos - 1, "expected ident");
        }
    }
    return true;
}

static bool parse_array(parser *p, json_value *v) {
    size_t cap = 0;
    v->type = JSON_ARRAY;
    v->u.array.items = NULL;
    v->u.array.len = 0;
    p->pos++; /* '[' */
    skip_whitespace(p);
    if (peek(p) == ']') {
        p->pos++;
        return true;
    }
    for (;;) {
        if (!grow((void **)&v->u.array.items, v->u.array.len, &cap, sizeof(json_value))) {
            return fail(p, "out of memory");
        }
        /* Counted before parsing so json_free releases a partly parsed item too. */
        json_value *item = &v->u.array.items[v->u.array.len++];
        item->type = JSON_NULL;
        if (!parse_value(p, item)) {
            return false;
        }
        skip_whitespace(p);
        int c = peek(p);
        if (c == ']') {
            p->pos++;
            return true;
        }
        if (c != ',') {
            return fail(p, c < 0 ? "EOF while parsing a list" : "expected `,` or `]`");
        }
        p->pos++;
        skip_whitespace(p);
        if (peek(p) == ']') {
            return fail(p, "trailing comma");
        }
    }
}

static bool parse_object(parser *p, json_value *v) {
    size_t cap = 0;
    v->type = JSON_OBJECT;
    v->u.object.members = NULL;
    v->u.object.len = 0;
    p->pos++; /* '{' */
    skip_whitespace(p);
    if (peek(p) == '}') {
        p->pos++;
        return true;
    }
    for (;;) {
        int c = peek(p);
        if (c != '"') {
            return fail(p, c < 0 ? "EOF while parsing an object" : "key must be a string");
        }
        if (!grow((void **)&v->u.object.members, v->u.object.len, &cap, sizeof(json_member))) {
            return fail(p, "out of memory");
        }
        json_member *m = &v->u.object.members[v->u.object.len];
        if (!parse_string(p, &m->key)) {
            return false;
        }
        m->key_end = p->pos;
        /* Counted now so json_free releases the key even if the value fails. */
        m->value.type = JSON_NULL;
        v->u.object.len++;
        skip_whitespace(p);
        c = peek(p);
        if (c != ':') {
            return fail(p, c < 0 ? "EOF while parsing an object" : "expected `:`");
        }
        p->pos++;
        if (!parse_value(p, &m->value)) {
            return false;
        }
        skip_whitespace(p);
        c = peek(p);
        if (c == '}') {
            p->pos++;
            return true;
        }
        if (c != ',') {
            return fail(p, c < 0 ? "EOF while parsing an object" : "expected `,` or `}`");
        }
        p->pos++;
        skip_whitespace(p);
        if (peek(p) == '}') {
            return fail(p, "trailing comma");
        }
    }
}

static bool parse_value(parser *p, json_value *v) {
    bool ok;
    v->type = JSON_NULL;
    skip_whitespace(p);
    v->start = p->pos;
    int c = peek(p);
    switch (c) {
    case -1:
        return fail(p, "EOF while parsing a value");
    case 'n':
        p->pos++;
        ok = parse_keyword(p, "ull");
        break;
    case 't':
        p->pos++;
        v->type = JSON_BOOL;
        v->u.boolean = true;
        ok = parse_keyword(p, "rue");
        break;
    case 'f':
        p->pos++;
        v->type = JSON_BOOL;
        v->u.boolean = false;
        ok = parse_keyword(p, "alse");
        break;
    case '-':
        p->pos++;
        ok = parse_number(p, false, v);
        break;
    case '"':
        v->type = JSON_STRING;
        v->u.string.ptr = NULL;
        v->u.string.len = 0;
        ok = parse_string(p, &v->u.string);
        break;
    case '[':
    case '{':
        if (--p->depth_left == 0) {
            return fail(p, "recursion limit exceeded");
        }
        ok = c == '[' ? parse_array(p, v) : parse_object(p, v);
        p->depth_left++;
        break;
    default:
        if (is_digit(c)) {
            ok = parse_number(p, true, v);
        } else {
            return fail(p, "expected value");
        }
    }
    v->end = p->pos;
    return ok;
}

bool json_parse(const char *text, size_t len, json_value *out, char *err, size_t err_size) {
    parser p = {text, len, 0, MAX_DEPTH, err, err_size};
    if (err_size > 0) {
        err[0] = '\0';
    }
    if (!parse_value(&p, out)) {
        json_free(out);
        return false;
    }
    skip_whitespace(&p);
    if (p.pos != len) {
        json_free(out);
        return fail(&p, "trailing characters");
    }
    return true;
}

void json_free(json_value *v) {
    switch (v->type) {
    case JSON_STRING:
        free(v->u.string.ptr);
        break;
    case JSON_ARRAY:
        for (size_t i = 0; i < v->u.array.len; i++) {
            json_free(&v->u.array.items[i]);
        }
        free(v->u.array.items);
        break;
    case JSON_OBJECT:
        for (size_t i = 0; i < v->u.object.len; i++) {
            free(v->u.object.members[i].key.ptr);
            json_free(&v->u.object.members[i].value);
        }
        free(v->u.object.members);
        break;
    default:
        break;
    }
    v->type = JSON_NULL;
}
