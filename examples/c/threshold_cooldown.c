/*
 * threshold_cooldown.c - the threshold-cooldown policy (Cloudify's Riemann "scale" policy)
 * as a scalehost component written in C; a port of plugins/threshold-cooldown.
 *
 * Each tick reads a per-host window sum of a metric (every sample in the window added up,
 * divided by the number of reporting hosts), fires the first rule whose threshold is crossed,
 * clamps the result to the rule's limit, then stays quiet for `cooldown_secs` from the tick
 * whose change the host applied (read back through `outcomes` at the next tick).
 *
 * Ownership follows wit-bindgen's C conventions (see the generated policy.h):
 *   - an export owns its argument strings and must free them;
 *   - an export's error string is freed by the bindings after the call, so it is malloc'd;
 *   - import arguments are only borrowed; import results belong to us and are freed with the
 *     generated *_free helpers.
 * The host runs every call in a fresh instance, but nothing here relies on that.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "policy.h"
#include "rustfmt.h"

/* State key of the last applied scale's instant: host milliseconds, 8 bytes little-endian. */
static const char LAST_SCALE_KEY[] = "last_scale_ms";
/* State key of a scale asked for and not yet known applied (same encoding). */
static const char PENDING_KEY[] = "pending_scale_ms";

/* Resolution of the range query of a `query` source. */
static const uint64_t QUERY_STEP_MS = 15000;

/* ---- small helpers ---------------------------------------------------------------------- */

static uint64_t saturating_add(uint64_t a, uint64_t b) {
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t saturating_mul(uint64_t a, uint64_t b) {
    return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

static uint64_t saturating_sub(uint64_t a, uint64_t b) {
    return a > b ? a - b : 0;
}

/* A borrowed view of one of our strings, for passing to an import. */
static policy_string_t view(json_str s) {
    return (policy_string_t){(uint8_t *)s.ptr, s.len};
}

static void log_at(scalehost_policy_log_level_t level, const char *message) {
    policy_string_t text;
    policy_string_set(&text, message);
    scalehost_policy_log_log(level, &text);
}

/* Sets the export's error to `prefix` followed by `len` bytes of `detail`; returns false. */
static bool fail_with(policy_string_t *err, const char *prefix, const void *detail, size_t len) {
    size_t prefix_len = strlen(prefix);
    err->len = prefix_len + len;
    err->ptr = malloc(err->len);
    if (!err->ptr) {
        abort();
    }
    memcpy(err->ptr, prefix, prefix_len);
    memcpy(err->ptr + prefix_len, detail, len);
    return false;
}

static bool fail_text(policy_string_t *err, const char *prefix, const char *detail) {
    return fail_with(err, prefix, detail, strlen(detail));
}

/* Fails the tick with a host error as the Rust SDK words it ("not found: ..."), freeing it. */
static bool fail_host(policy_string_t *err, scalehost_policy_types_host_error_t *e) {
    static const char *const prefixes[] = {"forbidden: ", "not found: ", "invalid: ",
                                           "unavailable: "};
    /* Every case of the variant carries one string in the same place. */
    policy_string_t *message = &e->val.forbidden;
    fail_with(err, prefixes[e->tag & 3], message->ptr, message->len);
    scalehost_policy_types_host_error_free(e);
    return false;
}

/* ---- the decision ----------------------------------------------------------------------- */

/* The per-host window sum: all samples of all series added up, divided by the number of series
 * that have a sample. False when no host reported. The sums fold from -0.0 in series order,
 * exactly as Rust's `Iterator::sum` for f64 does, so the result is bit-identical. */
static bool per_host_value(const scalehost_policy_metrics_list_series_t *series, double *value) {
    double sum = -0.0;
    size_t reporting = 0;
    for (size_t i = 0; i < series->len; i++) {
        const scalehost_policy_types_list_sample_t *samples = &series->ptr[i].samples;
        double series_sum = -0.0;
        for (size_t j = 0; j < samples->len; j++) {
            series_sum += samples->ptr[j].value;
        }
        sum += series_sum;
        reporting += samples->len > 0;
    }
    if (reporting == 0) {
        return false;
    }
    *value = sum / (double)reporting;
    return true;
}

typedef enum { NO_RULE, AT_LIMIT, SCALE } decision_kind;

typedef struct {
    decision_kind kind;
    size_t rule;       /* the rule that fired (AT_LIMIT, SCALE) */
    uint32_t replicas; /* the replicas to scale to (SCALE) */
} decision;

/* Applies the first rule that fires. An up rule never lowers replicas nor goes above its
 * limit; a down rule never raises them nor goes below its limit. */
static decision decide(const rule *rules, size_t count, double value, uint32_t current) {
    for (size_t i = 0; i < count; i++) {
        const rule *r = &rules[i];
        bool up = r->direction == DIRECTION_UP;
        if (!(up ? value > r->threshold : value < r->threshold)) {
            continue;
        }
        uint32_t stepped = r->step.to;
        if (r->step.kind == STEP_BY) {
            int64_t n = (int64_t)current + r->step.by;
            stepped = n < 0 ? 0 : n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
        }
        uint32_t wanted = up ? (stepped < r->limit ? stepped : r->limit)
                             : (stepped > r->limit ? stepped : r->limit);
        if (up ? wanted > current : wanted < current) {
            return (decision){SCALE, i, wanted};
        }
        return (decision){AT_LIMIT, i, 0};
    }
    return (decision){NO_RULE, 0, 0};
}

/* ---- state ------------------------------------------------------------------------------ */

/* The instant stored under `name`; false if absent or not exactly 8 bytes. */
static bool read_instant(const char *name, uint64_t *ms) {
    policy_string_t key;
    policy_list_u8_t bytes;
    policy_string_set(&key, name);
    if (!scalehost_policy_state_get(&key, &bytes)) {
        return false;
    }
    bool ok = bytes.len == 8;
    if (ok) {
        *ms = 0;
        for (int i = 7; i >= 0; i--) {
            *ms = *ms << 8 | bytes.ptr[i];
        }
    }
    policy_list_u8_free(&bytes);
    return ok;
}

static void write_instant(const char *name, uint64_t ms) {
    uint8_t le[8];
    for (int i = 0; i < 8; i++) {
        le[i] = (uint8_t)(ms >> (8 * i));
    }
    policy_string_t key;
    policy_list_u8_t value = {le, sizeof le};
    policy_string_set(&key, name);
    scalehost_policy_state_set(&key, &value);
}

static void forget(const char *name) {
    policy_string_t key;
    policy_string_set(&key, name);
    scalehost_policy_state_delete(&key);
}

static bool same_text(policy_string_t a, policy_string_t b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/*
 * Whether the scale asked for at `pending` changed `target`, from `previous`, the outcomes of
 * the binding's last applied tick (NULL after a host restart). Without them, or when they are
 * another tick's, it is assumed applied: a cooldown too many is safer than a scale too many.
 */
static bool pending_applied(uint64_t pending,
                            const scalehost_policy_outcomes_tick_outcomes_t *previous,
                            const scalehost_policy_types_workload_ref_t *target) {
    if (previous == NULL || previous->at != pending) {
        return true;
    }
    for (size_t i = 0; i < previous->scales.len; i++) {
        const scalehost_policy_outcomes_scale_outcome_t *s = &previous->scales.ptr[i];
        if (s->target.kind == target->kind && same_text(s->target.namespace_, target->namespace_) &&
            same_text(s->target.name, target->name) && !s->error.is_some &&
            s->applied != s->current) {
            return true;
        }
    }
    return false;
}

/* Settles the scale asked for at `pending`: true if it counts as applied. */
static bool settle_pending(uint64_t pending, const scalehost_policy_types_workload_ref_t *target) {
    scalehost_policy_outcomes_tick_outcomes_t previous;
    if (!scalehost_policy_outcomes_previous(&previous)) {
        return pending_applied(pending, NULL, target);
    }
    bool applied = pending_applied(pending, &previous, target);
    scalehost_policy_outcomes_tick_outcomes_free(&previous);
    return applied;
}

/* ---- the tick --------------------------------------------------------------------------- */

static bool tick(const config *c, policy_string_t *err) {
    uint64_t now = scalehost_policy_clock_now();
    scalehost_policy_types_workload_ref_t target = {
        c->target.kind == KIND_DEPLOYMENT ? SCALEHOST_POLICY_TYPES_WORKLOAD_KIND_DEPLOYMENT
                                          : SCALEHOST_POLICY_TYPES_WORKLOAD_KIND_STATEFUL_SET,
        view(c->target.namespace_),
        view(c->target.name),
    };
    uint64_t last;
    bool has_last = read_instant(LAST_SCALE_KEY, &last);
    /* The cooldown starts only where the host applied a change: settle the last intent. */
    uint64_t pending;
    if (read_instant(PENDING_KEY, &pending)) {
        forget(PENDING_KEY);
        if (settle_pending(pending, &target)) {
            last = pending;
            has_last = true;
            write_instant(LAST_SCALE_KEY, pending);
        } else {
            log_at(SCALEHOST_POLICY_LOG_LEVEL_INFO, "the last scale was not applied; no cooldown");
        }
    }
    if (has_last && now < saturating_add(last, saturating_mul(c->cooldown_secs, 1000))) {
        log_at(SCALEHOST_POLICY_LOG_LEVEL_DEBUG, "in cooldown");
        return true;
    }

    uint64_t window_ms = saturating_mul(c->window_secs, 1000);
    policy_string_t text = view(c->source.text);
    scalehost_policy_metrics_list_series_t series;
    scalehost_policy_types_host_error_t host_error;
    bool read = c->source.kind == SOURCE_EVENTS
                    ? scalehost_policy_metrics_events(&text, window_ms, &series, &host_error)
                    : scalehost_policy_metrics_query_range(&text, saturating_sub(now, window_ms),
                                                           now, QUERY_STEP_MS, &series,
                                                           &host_error);
    if (!read) {
        return fail_host(err, &host_error);
    }
    double value;
    bool reporting = per_host_value(&series, &value);
    scalehost_policy_metrics_list_series_free(&series);
    if (!reporting) {
        log_at(SCALEHOST_POLICY_LOG_LEVEL_INFO, "no hosts reporting in the window; no decision");
        return true;
    }

    scalehost_policy_types_workload_status_t status;
    if (!scalehost_policy_metrics_workload(&target, &status, &host_error)) {
        return fail_host(err, &host_error);
    }
    uint32_t current = status.replicas;
    scalehost_policy_types_workload_status_free(&status);

    decision d = decide(c->rules, c->rule_count, value, current);
    char value_text[RUSTFMT_MAX], threshold_text[RUSTFMT_MAX], message[3 * RUSTFMT_MAX];
    switch (d.kind) {
    case NO_RULE:
        break;
    case AT_LIMIT:
        snprintf(message, sizeof message, "rule %zu fired at %s but replicas are at its limit",
                 d.rule, rustfmt_fixed(value, 3, value_text, sizeof value_text));
        log_at(SCALEHOST_POLICY_LOG_LEVEL_DEBUG, message);
        break;
    case SCALE: {
        const rule *r = &c->rules[d.rule];
        snprintf(message, sizeof message,
                 "rule %zu: value %s %s threshold %s; %" PRIu32 " -> %" PRIu32, d.rule,
                 rustfmt_fixed(value, 3, value_text, sizeof value_text),
                 r->direction == DIRECTION_UP ? ">" : "<",
                 rustfmt_display(r->threshold, threshold_text, sizeof threshold_text), current,
                 d.replicas);
        scalehost_policy_types_scale_change_t change = {SCALEHOST_POLICY_TYPES_SCALE_CHANGE_TO,
                                                        {.to = d.replicas}};
        policy_string_t reason;
        uint32_t asked;
        policy_string_set(&reason, message);
        if (!scalehost_policy_actuation_scale(&target, &change, &reason, &asked, &host_error)) {
            return fail_host(err, &host_error);
        }
        write_instant(PENDING_KEY, now);
        break;
    }
    }
    return true;
}

/* ---- exports ---------------------------------------------------------------------------- */

/* Decodes the export's argument into `c` and frees the argument, which the export owns. */
static bool parse_argument(policy_string_t *json, config *c, policy_string_t *err) {
    char detail[512];
    bool ok = config_parse((const char *)json->ptr, json->len, c, detail, sizeof detail);
    policy_string_free(json);
    return ok || fail_text(err, "invalid config: ", detail);
}

bool exports_policy_validate_config(policy_string_t *json, policy_string_t *err) {
    config c;
    char detail[128];
    if (!parse_argument(json, &c, err)) {
        return false;
    }
    bool ok = config_validate(&c, detail, sizeof detail) || fail_text(err, "", detail);
    config_free(&c);
    return ok;
}

bool exports_policy_tick(policy_string_t *json, policy_string_t *err) {
    config c;
    /* The config is decoded again on every tick (a fresh instance each time) but, as in the
     * Rust policy, only validate-config checks it. */
    if (!parse_argument(json, &c, err)) {
        return false;
    }
    bool ok = tick(&c, err);
    config_free(&c);
    return ok;
}
