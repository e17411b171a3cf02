/*
 * config.c - decodes and checks the threshold-cooldown configuration; see config.h.
 *
 * The decoder mirrors what serde's derived Deserialize accepts through serde_json, so the C
 * and Rust builds take and refuse the same documents:
 *   - structs are objects (unknown or duplicate fields refused) or, as serde also allows,
 *     arrays listing the fields in declaration order;
 *   - unit enums are strings ("up") or one-key objects with a null value ({"up": null});
 *     enums with data are one-key objects ({"by": 2});
 *   - integers must be JSON integers in range; floats take any JSON number.
 */
#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rustfmt.h"

/* Lets the compiler check the format strings of our printf-like helpers. */
#if defined(__GNUC__)
#define PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define PRINTF_LIKE(fmt, args)
#endif

typedef struct {
    const char *text; /* the JSON source, for error positions */
    size_t len;
    char *err;
    size_t err_size;
} decoder;

/* Records "<message> at line L column C" for the byte before offset `end`. */
PRINTF_LIKE(3, 0)
static bool vfail_at(decoder *d, size_t end, const char *fmt, va_list args) {
    int n = vsnprintf(d->err, d->err_size, fmt, args);
    if (n >= 0 && (size_t)n < d->err_size) {
        char where[64];
        json_position(d->text, d->len, end > 0 ? end - 1 : 0, where, sizeof where);
        snprintf(d->err + n, d->err_size - (size_t)n, " at %s", where);
    }
    return false;
}

/* An error about value `v`, placed at its end as serde_json places it. */
PRINTF_LIKE(3, 4)
static bool fail(decoder *d, const json_value *v, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vfail_at(d, v->end, fmt, args);
    va_end(args);
    return false;
}

/* An error placed just before offset `end`, e.g. after a key for an unknown field. */
PRINTF_LIKE(3, 4)
static bool fail_end(decoder *d, size_t end, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vfail_at(d, end, fmt, args);
    va_end(args);
    return false;
}

/* What serde calls the value in "invalid type" messages. */
static const char *describe(const json_value *v, char *buf, size_t size) {
    switch (v->type) {
    case JSON_NULL:
        return "null";
    case JSON_BOOL:
        snprintf(buf, size, "boolean `%s`", v->u.boolean ? "true" : "false");
        return buf;
    case JSON_NUMBER:
        switch (v->u.number.kind) {
        case JSON_NUM_U64:
            snprintf(buf, size, "integer `%" PRIu64 "`", v->u.number.as.u);
            break;
        case JSON_NUM_I64:
            snprintf(buf, size, "integer `%" PRId64 "`", v->u.number.as.i);
            break;
        case JSON_NUM_F64: {
            char num[RUSTFMT_MAX];
            rustfmt_display(v->u.number.as.f, num, sizeof num);
            /* serde writes floats with a decimal point: `1.0`, not `1`. */
            bool integral = strchr(num, '.') == NULL && strchr(num, 'n') == NULL;
            snprintf(buf, size, "floating point `%s%s`", num, integral ? ".0" : "");
            break;
        }
        }
        return buf;
    case JSON_STRING:
        snprintf(buf, size, "string \"%s\"", v->u.string.ptr);
        return buf;
    case JSON_ARRAY:
        return "sequence";
    case JSON_OBJECT:
        return "map";
    }
    return "value";
}

static bool invalid_type(decoder *d, const json_value *v, const char *expected) {
    char buf[RUSTFMT_MAX + 64];
    /* serde_json reads a scalar before refusing it, but not an array or an object. */
    bool container = v->type == JSON_ARRAY || v->type == JSON_OBJECT;
    return fail_end(d, container ? v->start : v->end, "invalid type: %s, expected %s",
                    describe(v, buf, sizeof buf), expected);
}

static bool str_is(const json_str *s, const char *name) {
    return s->len == strlen(name) && memcmp(s->ptr, name, s->len) == 0;
}

/* Writes "`a`, `b` or `c`"-style lists as serde's messages do. */
static void list_names(const char *const names[], size_t count, const char *last_sep, char *buf,
                       size_t size) {
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < count && at < size; i++) {
        const char *sep = i == 0 ? "" : i + 1 == count ? last_sep : ", ";
        int n = snprintf(buf + at, size - at, "%s`%s`", sep, names[i]);
        at += n > 0 ? (size_t)n : 0;
    }
}

/* ---- scalars ---------------------------------------------------------------------------- */

static bool decode_unsigned(decoder *d, const json_value *v, uint64_t max, const char *type,
                            uint64_t *out) {
    char buf[64];
    if (v->type != JSON_NUMBER || v->u.number.kind == JSON_NUM_F64) {
        return invalid_type(d, v, type);
    }
    if (v->u.number.kind == JSON_NUM_I64 || v->u.number.as.u > max) {
        return fail(d, v, "invalid value: %s, expected %s", describe(v, buf, sizeof buf), type);
    }
    *out = v->u.number.as.u;
    return true;
}

static bool decode_u64(decoder *d, const json_value *v, uint64_t *out) {
    return decode_unsigned(d, v, UINT64_MAX, "u64", out);
}

static bool decode_u32(decoder *d, const json_value *v, uint32_t *out) {
    uint64_t wide;
    if (!decode_unsigned(d, v, UINT32_MAX, "u32", &wide)) {
        return false;
    }
    *out = (uint32_t)wide;
    return true;
}

static bool decode_i32(decoder *d, const json_value *v, int32_t *out) {
    char buf[64];
    if (v->type != JSON_NUMBER || v->u.number.kind == JSON_NUM_F64) {
        return invalid_type(d, v, "i32");
    }
    if (v->u.number.kind == JSON_NUM_U64 ? v->u.number.as.u > INT32_MAX
                                         : v->u.number.as.i < INT32_MIN) {
        return fail(d, v, "invalid value: %s, expected i32", describe(v, buf, sizeof buf));
    }
    *out = v->u.number.kind == JSON_NUM_U64 ? (int32_t)v->u.number.as.u
                                            : (int32_t)v->u.number.as.i;
    return true;
}

static bool decode_f64(decoder *d, const json_value *v, double *out) {
    if (v->type != JSON_NUMBER) {
        return invalid_type(d, v, "f64");
    }
    switch (v->u.number.kind) {
    case JSON_NUM_U64:
        *out = (double)v->u.number.as.u;
        break;
    case JSON_NUM_I64:
        *out = (double)v->u.number.as.i;
        break;
    case JSON_NUM_F64:
        *out = v->u.number.as.f;
        break;
    }
    return true;
}

static bool decode_string(decoder *d, const json_value *v, json_str *out) {
    if (v->type != JSON_STRING) {
        return invalid_type(d, v, "a string");
    }
    *out = v->u.string;
    return true;
}

/* ---- structs and enums ------------------------------------------------------------------ */

/* A struct as serde's derive sees it: its name in messages and its fields in declaration
 * order (the order an array form lists them in). */
typedef struct {
    const char *name;
    const char *const *fields;
    size_t count;
} struct_shape;

/* Sorts the fields of `v` into `out` (NULL where absent): from an object by key, refusing
 * unknown and repeated keys, or from an array by position. */
static bool struct_fields(decoder *d, const json_value *v, const struct_shape *shape,
                          const json_value *out[]) {
    char expected[128];
    for (size_t i = 0; i < shape->count; i++) {
        out[i] = NULL;
    }
    if (v->type == JSON_ARRAY) {
        if (v->u.array.len > shape->count) {
            return fail(d, v, "invalid length %zu, expected struct %s with %zu element%s",
                        v->u.array.len, shape->name, shape->count, shape->count == 1 ? "" : "s");
        }
        for (size_t i = 0; i < v->u.array.len; i++) {
            out[i] = &v->u.array.items[i];
        }
        return true;
    }
    if (v->type != JSON_OBJECT) {
        snprintf(expected, sizeof expected, "struct %s", shape->name);
        return invalid_type(d, v, expected);
    }
    for (size_t m = 0; m < v->u.object.len; m++) {
        const json_member *member = &v->u.object.members[m];
        size_t i = 0;
        while (i < shape->count && !str_is(&member->key, shape->fields[i])) {
            i++;
        }
        if (i == shape->count) {
            list_names(shape->fields, shape->count, ", ", expected, sizeof expected);
            return fail_end(d, member->key_end, "unknown field `%s`, expected %s%s",
                            member->key.ptr, shape->count == 1 ? "" : "one of ", expected);
        }
        if (out[i]) {
            return fail_end(d, member->key_end, "duplicate field `%s`", shape->fields[i]);
        }
        out[i] = &member->value;
    }
    return true;
}

/* Field `i` of `v` is absent and has no default. */
static bool missing(decoder *d, const json_value *v, const struct_shape *shape, size_t i) {
    if (v->type == JSON_ARRAY) {
        return fail(d, v, "invalid length %zu, expected struct %s with %zu element%s", i,
                    shape->name, shape->count, shape->count == 1 ? "" : "s");
    }
    return fail(d, v, "missing field `%s`", shape->fields[i]);
}

/* An enum as serde's derive sees it: variant names and, for variants with data, their shape
 * in messages ("newtype variant", "struct variant"). */
typedef struct {
    const char *name;
    const char *const *variants;
    const char *const *kinds; /* NULL for an enum of unit variants */
    size_t count;
} enum_shape;

/* Finds `key` among the variants; reports an unknown variant (ending at `end`) otherwise. */
static bool variant_index(decoder *d, size_t end, const json_str *key, const enum_shape *shape,
                          size_t *index) {
    for (size_t i = 0; i < shape->count; i++) {
        if (str_is(key, shape->variants[i])) {
            *index = i;
            return true;
        }
    }
    char expected[128];
    list_names(shape->variants, shape->count, " or ", expected, sizeof expected);
    return fail_end(d, end, "unknown variant `%s`, expected %s", key->ptr, expected);
}

/* The object form of an enum has exactly one key, the variant: `{"variant": payload}`. */
static const json_member *variant_member(decoder *d, const json_value *v,
                                         const enum_shape *shape, size_t *index) {
    if (v->type != JSON_OBJECT || v->u.object.len != 1) {
        char expected[64];
        snprintf(expected, sizeof expected, "enum %s", shape->name);
        invalid_type(d, v, expected);
        return NULL;
    }
    const json_member *m = &v->u.object.members[0];
    return variant_index(d, m->key_end, &m->key, shape, index) ? m : NULL;
}

/* A variant without data: `"up"`, or `{"up": null}` which serde_json also takes. */
static bool decode_unit_variant(decoder *d, const json_value *v, const enum_shape *shape,
                                size_t *index) {
    if (v->type == JSON_STRING) {
        return variant_index(d, v->end, &v->u.string, shape, index);
    }
    const json_member *m = variant_member(d, v, shape, index);
    return m && (m->value.type == JSON_NULL || invalid_type(d, &m->value, "unit"));
}

/* A variant with data: `{"by": 2}`; `*payload` is the value. */
static bool decode_data_variant(decoder *d, const json_value *v, const enum_shape *shape,
                                size_t *index, const json_value **payload) {
    if (v->type == JSON_STRING) {
        /* A bare variant name has no data to give. */
        return variant_index(d, v->end, &v->u.string, shape, index) &&
               fail(d, v, "invalid type: unit variant, expected %s", shape->kinds[*index]);
    }
    const json_member *m = variant_member(d, v, shape, index);
    if (m) {
        *payload = &m->value;
    }
    return m != NULL;
}

/* ---- the configuration ------------------------------------------------------------------ */

static const char *const TARGET_FIELDS[] = {"kind", "namespace", "name"};
static const struct_shape TARGET = {"WorkloadRef", TARGET_FIELDS, 3};
static const char *const KIND_NAMES[] = {"deployment", "stateful-set"};
static const enum_shape KIND = {"WorkloadKind", KIND_NAMES, NULL, 2};

static const char *const SOURCE_NAMES[] = {"events", "query"};
static const char *const SOURCE_KINDS[] = {"struct variant", "newtype variant"};
static const enum_shape SOURCE = {"Source", SOURCE_NAMES, SOURCE_KINDS, 2};
static const char *const EVENTS_FIELDS[] = {"service"};
static const struct_shape EVENTS = {"variant Source::Events", EVENTS_FIELDS, 1};

static const char *const STEP_NAMES[] = {"by", "to"};
static const char *const STEP_KINDS[] = {"newtype variant", "newtype variant"};
static const enum_shape STEP = {"Step", STEP_NAMES, STEP_KINDS, 2};

static const char *const DIRECTION_NAMES[] = {"up", "down"};
static const enum_shape DIRECTION = {"Direction", DIRECTION_NAMES, NULL, 2};
static const char *const RULE_FIELDS[] = {"direction", "threshold", "step", "limit"};
static const struct_shape RULE = {"Rule", RULE_FIELDS, 4};

static const char *const CONFIG_FIELDS[] = {"target", "source", "window_secs", "rules",
                                            "cooldown_secs"};
static const struct_shape CONFIG = {"Config", CONFIG_FIELDS, 5};

static bool decode_target(decoder *d, const json_value *v, workload_ref *out) {
    const json_value *f[3];
    size_t kind = 0; /* `kind` defaults to deployment */
    if (!struct_fields(d, v, &TARGET, f) ||
        (f[0] && !decode_unit_variant(d, f[0], &KIND, &kind))) {
        return false;
    }
    out->kind = kind == 0 ? KIND_DEPLOYMENT : KIND_STATEFUL_SET;
    if (!f[1]) {
        return missing(d, v, &TARGET, 1);
    }
    if (!decode_string(d, f[1], &out->namespace_)) {
        return false;
    }
    if (!f[2]) {
        return missing(d, v, &TARGET, 2);
    }
    return decode_string(d, f[2], &out->name);
}

static bool decode_source(decoder *d, const json_value *v, source *out) {
    const json_value *payload, *service;
    size_t which;
    if (!decode_data_variant(d, v, &SOURCE, &which, &payload)) {
        return false;
    }
    if (which == 1) {
        out->kind = SOURCE_QUERY;
        return decode_string(d, payload, &out->text);
    }
    out->kind = SOURCE_EVENTS;
    if (!struct_fields(d, payload, &EVENTS, &service)) {
        return false;
    }
    if (!service) {
        return missing(d, payload, &EVENTS, 0);
    }
    return decode_string(d, service, &out->text);
}

static bool decode_step(decoder *d, const json_value *v, step *out) {
    const json_value *payload;
    size_t which;
    if (!decode_data_variant(d, v, &STEP, &which, &payload)) {
        return false;
    }
    out->kind = which == 0 ? STEP_BY : STEP_TO;
    out->by = 0;
    out->to = 0;
    return which == 0 ? decode_i32(d, payload, &out->by) : decode_u32(d, payload, &out->to);
}

static bool decode_rule(decoder *d, const json_value *v, rule *out) {
    const json_value *f[4];
    size_t dir;
    if (!struct_fields(d, v, &RULE, f)) {
        return false;
    }
    for (size_t i = 0; i < 4; i++) {
        if (!f[i]) {
            return missing(d, v, &RULE, i);
        }
    }
    if (!decode_unit_variant(d, f[0], &DIRECTION, &dir)) {
        return false;
    }
    out->direction = dir == 0 ? DIRECTION_UP : DIRECTION_DOWN;
    return decode_f64(d, f[1], &out->threshold) && decode_step(d, f[2], &out->step) &&
           decode_u32(d, f[3], &out->limit);
}

static bool decode_rules(decoder *d, const json_value *v, config *out) {
    if (v->type != JSON_ARRAY) {
        return invalid_type(d, v, "a sequence");
    }
    out->rule_count = v->u.array.len;
    if (out->rule_count == 0) {
        return true;
    }
    out->rules = calloc(out->rule_count, sizeof(rule));
    if (!out->rules) {
        return fail(d, v, "out of memory");
    }
    for (size_t i = 0; i < out->rule_count; i++) {
        if (!decode_rule(d, &v->u.array.items[i], &out->rules[i])) {
            return false;
        }
    }
    return true;
}

static bool decode_config(decoder *d, const json_value *v, config *out) {
    const json_value *f[5];
    if (!struct_fields(d, v, &CONFIG, f)) {
        return false;
    }
    /* Decoded in declaration order, as serde's derive does for the array form. */
    if (!f[0]) {
        return missing(d, v, &CONFIG, 0);
    }
    if (!decode_target(d, f[0], &out->target)) {
        return false;
    }
    if (!f[1]) {
        return missing(d, v, &CONFIG, 1);
    }
    if (!decode_source(d, f[1], &out->source)) {
        return false;
    }
    out->window_secs = 60;
    if (f[2] && !decode_u64(d, f[2], &out->window_secs)) {
        return false;
    }
    if (!f[3]) {
        return missing(d, v, &CONFIG, 3);
    }
    if (!decode_rules(d, f[3], out)) {
        return false;
    }
    out->cooldown_secs = 120;
    return !f[4] || decode_u64(d, f[4], &out->cooldown_secs);
}

bool config_parse(const char *json, size_t len, config *out, char *err, size_t err_size) {
    decoder d = {json, len, err, err_size};
    memset(out, 0, sizeof *out);
    if (!json_parse(json, len, &out->document, err, err_size)) {
        return false;
    }
    if (!decode_config(&d, &out->document, out)) {
        config_free(out);
        return false;
    }
    return true;
}

void config_free(config *c) {
    free(c->rules);
    c->rules = NULL;
    c->rule_count = 0;
    json_free(&c->document);
}

/* ---- validate-config -------------------------------------------------------------------- */

/* Whether `s` is empty or only Unicode White_Space, i.e. Rust's `s.trim().is_empty()`. */
static bool blank(const json_str *s) {
    const unsigned char *p = (const unsigned char *)s->ptr, *end = p + s->len;
    while (p < end) {
        uint32_t cp;
        /* Strings are valid UTF-8 (the input was, and escapes are encoded as such). */
        if (*p < 0x80) {
            cp = *p++;
        } else if (*p < 0xE0 && p + 1 < end) {
            cp = (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
            p += 2;
        } else if (*p < 0xF0 && p + 2 < end) {
            cp = (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
            p += 3;
        } else if (p + 3 < end) {
            cp = (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 |
                 (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
            p += 4;
        } else {
            return false;
        }
        bool space = (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
                     cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
                     cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
        if (!space) {
            return false;
        }
    }
    return true;
}

PRINTF_LIKE(3, 4)
static bool invalid(char *err, size_t size, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(err, size, fmt, args);
    va_end(args);
    return false;
}

bool config_validate(const config *c, char *err, size_t size) {
    if (c->target.namespace_.len == 0 || c->target.name.len == 0) {
        return invalid(err, size, "target must name a namespace and a workload");
    }
    if (c->source.kind == SOURCE_EVENTS && c->source.text.len == 0) {
        return invalid(err, size, "source.events.service must not be empty");
    }
    if (c->source.kind == SOURCE_QUERY && blank(&c->source.text)) {
        return invalid(err, size, "source.query must not be empty");
    }
    if (c->window_secs == 0) {
        return invalid(err, size, "window_secs must be at least 1");
    }
    if (c->rule_count == 0) {
        return invalid(err, size, "rules must not be empty");
    }
    for (size_t i = 0; i < c->rule_count; i++) {
        const rule *r = &c->rules[i];
        if (!isfinite(r->threshold)) {
            return invalid(err, size, "rules[%zu].threshold must be finite", i);
        }
        if (r->step.kind == STEP_BY && r->direction == DIRECTION_UP && r->step.by <= 0) {
            return invalid(err, size, "rules[%zu].step.by must be positive for an up rule", i);
        }
        if (r->step.kind == STEP_BY && r->direction == DIRECTION_DOWN && r->step.by >= 0) {
            return invalid(err, size, "rules[%zu].step.by must be negative for a down rule", i);
        }
    }
    return true;
}
