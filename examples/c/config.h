/*
 * config.h - the threshold-cooldown configuration: its C form, the JSON decoder and the
 * checks of validate-config. The schema is documented in plugins/threshold-cooldown/README.md.
 * Portable C11 (no WebAssembly bindings), so it also builds natively for tests.
 */
#ifndef SCALEHOST_CONFIG_H
#define SCALEHOST_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"

typedef enum { KIND_DEPLOYMENT, KIND_STATEFUL_SET } workload_kind;

/* The workload to scale. */
typedef struct {
    workload_kind kind;
    json_str namespace_;
    json_str name;
} workload_ref;

/* Where the value comes from: a pushed events service or a PromQL range query. */
typedef enum { SOURCE_EVENTS, SOURCE_QUERY } source_kind;

typedef struct {
    source_kind kind;
    json_str text; /* the service name or the PromQL expression */
} source;

typedef enum { DIRECTION_UP, DIRECTION_DOWN } direction;

/* How a rule changes replicas: add `by` (signed) or scale to exactly `to`. */
typedef enum { STEP_BY, STEP_TO } step_kind;

typedef struct {
    step_kind kind;
    int32_t by;
    uint32_t to;
} step;

typedef struct {
    direction direction;
    double threshold;
    step step;
    uint32_t limit; /* most replicas for an up rule, fewest for a down rule */
} rule;

typedef struct {
    workload_ref target;
    source source;
    uint64_t window_secs;   /* default 60 */
    rule *rules;            /* tried in order; the first that fires decides */
    size_t rule_count;
    uint64_t cooldown_secs; /* default 120 */
    json_value document;    /* owns every string above */
} config;

/* Decodes a configuration. Like serde's derive with `deny_unknown_fields`, it refuses unknown
 * and duplicate fields, wrong types and out-of-range integers. On failure it writes the reason
 * to `err` and leaves nothing to free. */
bool config_parse(const char *json, size_t len, config *out, char *err, size_t err_size);

/* The checks validate-config adds to decoding, in the Rust policy's order and words. */
bool config_validate(const config *c, char *err, size_t err_size);

void config_free(config *c);

#endif
