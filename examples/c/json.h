/*
 * json.h - a small, strict JSON reader (RFC 8259) that parses a document into a tree.
 *
 * It accepts exactly what serde_json's `from_str` accepts and classifies numbers the way
 * serde_json does (unsigned integer, negative integer, or float, with serde_json's own
 * float conversion), so a C policy can refuse the same configurations as a Rust one.
 * Portable C11: no dependency on the WebAssembly bindings, so it also builds natively for tests.
 */
#ifndef SCALEHOST_JSON_H
#define SCALEHOST_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} json_type;

/* How serde_json sees a number: integers without fraction or exponent stay integers when they
 * fit (`-0` and too large integers become floats), everything else is a float. */
typedef enum {
    JSON_NUM_U64, /* a non-negative integer that fits a u64 */
    JSON_NUM_I64, /* a negative integer that fits an i64 */
    JSON_NUM_F64, /* anything else */
} json_num_kind;

/* A decoded string: UTF-8, `len` bytes, may contain NUL; `ptr[len]` is a terminating NUL. */
typedef struct {
    char *ptr;
    size_t len;
} json_str;

typedef struct json_value json_value;
typedef struct json_member json_member;

struct json_value {
    json_type type;
    size_t start, end; /* byte offsets of the value in the source, for error positions */
    union {
        bool boolean;
        struct {
            json_num_kind kind;
            union {
                uint64_t u;
                int64_t i;
                double f;
            } as;
        } number;
        json_str string;
        struct {
            json_value *items;
            size_t len;
        } array;
        struct {
            json_member *members; /* in document order; duplicate keys are kept */
            size_t len;
        } object;
    } u;
};

struct json_member {
    json_str key;
    size_t key_end; /* byte offset just past the key's closing quote */
    json_value value;
};

/* Parses `len` bytes of `text` into `*out`. On failure returns false and writes a message to
 * `err` (at most `err_size` bytes, NUL-terminated); `*out` is then left empty. */
bool json_parse(const char *text, size_t len, json_value *out, char *err, size_t err_size);

/* Frees what json_parse allocated under `v` (not `v` itself). */
void json_free(json_value *v);

/* Renders `offset` of `text` as "line L column C" (1-based), as serde_json reports positions. */
void json_position(const char *text, size_t len, size_t offset, char *buf, size_t buf_size);

#endif
