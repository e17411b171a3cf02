/*
 * native_test.c - unit tests of the C threshold-cooldown policy, run natively (not in wasm).
 *
 * The host's imports are replaced by a scripted fake host below, which hands out results in
 * freshly malloc'd memory exactly as the canonical ABI does, so running this under
 * AddressSanitizer/LeakSanitizer also checks that the policy frees what it is given.
 * Build and run (from the repository root, after `cargo xtask plugins` generated policy.h):
 *
 *   gcc -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter -g -fsanitize=address,undefined \
 *       -I examples/c -I target/c/c examples/c/tests/native_test.c examples/c/json.c \
 *       examples/c/config.c examples/c/rustfmt.c examples/c/threshold_cooldown.c \
 *       -lm -o target/c/native_test && target/c/native_test
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "json.h"
#include "policy.h"
#include "rustfmt.h"

static int failures;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);         \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

#define CHECK_STR(actual, expected)                                                          \
    do {                                                                                     \
        const char *a_ = (actual), *e_ = (expected);                                         \
        if (strcmp(a_, e_) != 0) {                                                           \
            fprintf(stderr, "%s:%d: got \"%s\", want \"%s\"\n", __FILE__, __LINE__, a_, e_); \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

/* ---- the fake host ---------------------------------------------------------------------- */

#define MAX_SERIES 4
#define MAX_SAMPLES 8

static struct {
    uint64_t now;
    bool has_state; /* last_scale_ms */
    uint8_t state[16];
    size_t state_len;
    bool has_pending; /* pending_scale_ms */
    uint8_t pending[16];
    size_t pending_len;
    /* outcomes.previous: one scale of web/api */
    bool has_previous;
    uint64_t previous_at;
    uint32_t previous_current, previous_applied;
    bool previous_failed;
    size_t series_count;
    size_t sample_count[MAX_SERIES];
    double samples[MAX_SERIES][MAX_SAMPLES];
    int read_error; /* -1 none, else the host-error tag for events/query-range */
    uint32_t replicas;
    /* what the policy did */
    char calls[512];
    char reason[512];
    char last_log[512];
    uint32_t scaled_to;
    uint64_t range_start, range_end, window_ms;
} host;

static void reset_host(void) {
    memset(&host, 0, sizeof host);
    host.read_error = -1;
    host.now = 1000000;
}

static void called(const char *name) {
    strncat(host.calls, name, sizeof host.calls - strlen(host.calls) - 1);
    strncat(host.calls, " ", sizeof host.calls - strlen(host.calls) - 1);
}

static void copy_out(char *dst, size_t size, const policy_string_t *s) {
    size_t n = s->len < size - 1 ? s->len : size - 1;
    memcpy(dst, s->ptr, n);
    dst[n] = '\0';
}

static bool give_series(scalehost_policy_metrics_list_series_t *ret,
                        scalehost_policy_metrics_host_error_t *err) {
    if (host.read_error >= 0) {
        err->tag = (uint8_t)host.read_error;
        policy_string_dup(&err->val.forbidden, "nope");
        return false;
    }
    ret->len = host.series_count;
    ret->ptr = host.series_count ? calloc(host.series_count, sizeof *ret->ptr) : NULL;
    for (size_t i = 0; i < host.series_count; i++) {
        scalehost_policy_types_series_t *s = &ret->ptr[i];
        s->labels.len = 1;
        s->labels.ptr = calloc(1, sizeof *s->labels.ptr);
        policy_string_dup(&s->labels.ptr[0].f0, "host");
        policy_string_dup(&s->labels.ptr[0].f1, "h");
        s->samples.len = host.sample_count[i];
        s->samples.ptr = s->samples.len ? calloc(s->samples.len, sizeof *s->samples.ptr) : NULL;
        for (size_t j = 0; j < s->samples.len; j++) {
            s->samples.ptr[j].value = host.samples[i][j];
        }
    }
    return true;
}

uint64_t scalehost_policy_clock_now(void) {
    called("now");
    return host.now;
}

static bool is_key(const policy_string_t *key, const char *name) {
    return key->len == strlen(name) && memcmp(key->ptr, name, key->len) == 0;
}

bool scalehost_policy_state_get(policy_string_t *key, policy_list_u8_t *ret) {
    called("state.get");
    bool pending = is_key(key, "pending_scale_ms");
    CHECK(pending || is_key(key, "last_scale_ms"));
    if (!(pending ? host.has_pending : host.has_state)) {
        return false;
    }
    size_t len = pending ? host.pending_len : host.state_len;
    ret->len = len;
    ret->ptr = malloc(len ? len : 1);
    memcpy(ret->ptr, pending ? host.pending : host.state, len);
    return true;
}

void scalehost_policy_state_set(policy_string_t *key, policy_list_u8_t *value) {
    called("state.set");
    CHECK(value->len <= 16);
    if (is_key(key, "pending_scale_ms")) {
        host.has_pending = true;
        host.pending_len = value->len;
        memcpy(host.pending, value->ptr, value->len);
    } else {
        CHECK(is_key(key, "last_scale_ms"));
        host.has_state = true;
        host.state_len = value->len;
        memcpy(host.state, value->ptr, value->len);
    }
}

void scalehost_policy_state_delete(policy_string_t *key) {
    called("state.delete");
    CHECK(is_key(key, "pending_scale_ms"));
    host.has_pending = false;
}

bool scalehost_policy_outcomes_previous(scalehost_policy_outcomes_tick_outcomes_t *ret) {
    called("previous");
    if (!host.has_previous) {
        return false;
    }
    memset(ret, 0, sizeof *ret);
    ret->at = host.previous_at;
    ret->scales.len = 1;
    ret->scales.ptr = calloc(1, sizeof *ret->scales.ptr);
    scalehost_policy_outcomes_scale_outcome_t *s = &ret->scales.ptr[0];
    s->target.kind = SCALEHOST_POLICY_TYPES_WORKLOAD_KIND_DEPLOYMENT;
    policy_string_dup(&s->target.namespace_, "web");
    policy_string_dup(&s->target.name, "api");
    s->current = host.previous_current;
    s->requested = host.previous_applied;
    s->applied = host.previous_applied;
    if (host.previous_failed) {
        s->error.is_some = true;
        policy_string_dup(&s->error.val, "refused");
    }
    return true;
}

void scalehost_policy_outcomes_tick_outcomes_free(scalehost_policy_outcomes_tick_outcomes_t *o) {
    for (size_t i = 0; i < o->scales.len; i++) {
        policy_string_free(&o->scales.ptr[i].target.namespace_);
        policy_string_free(&o->scales.ptr[i].target.name);
        if (o->scales.ptr[i].error.is_some) {
            policy_string_free(&o->scales.ptr[i].error.val);
        }
    }
    free(o->scales.ptr);
}

static void set_instant(uint8_t *bytes, size_t *len, bool *has, uint64_t ms) {
    *has = true;
    *len = 8;
    for (int i = 0; i < 8; i++) {
        bytes[i] = (uint8_t)(ms >> (8 * i));
    }
}

void scalehost_policy_log_log(scalehost_policy_log_level_t level, policy_string_t *message) {
    called(level == SCALEHOST_POLICY_LOG_LEVEL_DEBUG ? "log.debug" : "log.info");
    copy_out(host.last_log, sizeof host.last_log, message);
}

bool scalehost_policy_metrics_events(policy_string_t *service, uint64_t window_ms,
                                     scalehost_policy_metrics_list_series_t *ret,
                                     scalehost_policy_metrics_host_error_t *err) {
    called("events");
    host.window_ms = window_ms;
    return give_series(ret, err);
}

bool scalehost_policy_metrics_query_range(policy_string_t *promql, uint64_t start, uint64_t end,
                                          uint64_t step_ms,
                                          scalehost_policy_metrics_list_series_t *ret,
                                          scalehost_policy_metrics_host_error_t *err) {
    called("query-range");
    CHECK(step_ms == 15000);
    host.range_start = start;
    host.range_end = end;
    return give_series(ret, err);
}

bool scalehost_policy_metrics_workload(scalehost_policy_metrics_workload_ref_t *target,
                                       scalehost_policy_metrics_workload_status_t *ret,
                                       scalehost_policy_metrics_host_error_t *err) {
    called("workload");
    memset(ret, 0, sizeof *ret);
    ret->replicas = host.replicas;
    return true;
}

bool scalehost_policy_actuation_scale(scalehost_policy_actuation_workload_ref_t *target,
                                      scalehost_policy_actuation_scale_change_t *change,
                                      policy_string_t *reason, uint32_t *ret,
                                      scalehost_policy_actuation_host_error_t *err) {
    called("scale");
    CHECK(change->tag == SCALEHOST_POLICY_TYPES_SCALE_CHANGE_TO);
    host.scaled_to = change->val.to;
    copy_out(host.reason, sizeof host.reason, reason);
    *ret = change->val.to;
    return true;
}

/* The generated helpers the policy uses (policy.c itself only links into wasm). */
void policy_string_set(policy_string_t *ret, const char *s) {
    ret->ptr = (uint8_t *)s;
    ret->len = strlen(s);
}

void policy_string_dup(policy_string_t *ret, const char *s) {
    ret->len = strlen(s);
    ret->ptr = malloc(ret->len ? ret->len : 1);
    memcpy(ret->ptr, s, ret->len);
}

void policy_string_free(policy_string_t *s) {
    free(s->ptr);
    s->ptr = NULL;
    s->len = 0;
}

void policy_list_u8_free(policy_list_u8_t *l) {
    free(l->ptr);
}

void scalehost_policy_types_host_error_free(scalehost_policy_types_host_error_t *e) {
    policy_string_free(&e->val.forbidden);
}

void scalehost_policy_types_workload_status_free(scalehost_policy_types_workload_status_t *s) {
    (void)s;
}

void scalehost_policy_metrics_list_series_free(scalehost_policy_metrics_list_series_t *l) {
    for (size_t i = 0; i < l->len; i++) {
        for (size_t j = 0; j < l->ptr[i].labels.len; j++) {
            policy_string_free(&l->ptr[i].labels.ptr[j].f0);
            policy_string_free(&l->ptr[i].labels.ptr[j].f1);
        }
        free(l->ptr[i].labels.ptr);
        free(l->ptr[i].samples.ptr);
    }
    free(l->ptr);
}

/* ---- calling the exports as the host does ----------------------------------------------- */

/* Calls an export with a malloc'd copy of `json` (the export owns it) and returns its error
 * ("" on success) in `err_out`. */
static bool call(bool (*export)(policy_string_t *, policy_string_t *), const char *json,
                 char *err_out, size_t size) {
    policy_string_t arg, err = {0};
    policy_string_dup(&arg, json);
    bool ok = export(&arg, &err);
    err_out[0] = '\0';
    if (!ok) {
        copy_out(err_out, size, &err);
        free(err.ptr); /* what the bindings' post-return does */
    }
    return ok;
}

static const char *BASE = "{\"target\": {\"namespace\": \"web\", \"name\": \"api\"},"
                          " \"source\": {\"events\": {\"service\": \"web/api/requests\"}},";

static char *with_rules(const char *rest) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s %s}", BASE, rest);
    return buf;
}

static void validate_is(const char *json, const char *expected) {
    char err[512];
    bool ok = call(exports_policy_validate_config, json, err, sizeof err);
    CHECK(ok == (expected[0] == '\0'));
    CHECK_STR(err, expected);
}

static void validate_refuses_parse(const char *json) {
    char err[512];
    CHECK(!call(exports_policy_validate_config, json, err, sizeof err));
    if (strncmp(err, "invalid config: ", 16) != 0) {
        fprintf(stderr, "expected a parse error for %s, got \"%s\"\n", json, err);
        failures++;
    }
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_formatting(void) {
    char buf[RUSTFMT_MAX];
    CHECK_STR(rustfmt_display(54.0, buf, sizeof buf), "54");
    CHECK_STR(rustfmt_display(0.8 * 4.4, buf, sizeof buf), "3.5200000000000005");
    CHECK_STR(rustfmt_display(0.1, buf, sizeof buf), "0.1");
    CHECK_STR(rustfmt_display(-0.0, buf, sizeof buf), "-0");
    CHECK_STR(rustfmt_display(1e21, buf, sizeof buf), "1000000000000000000000");
    CHECK_STR(rustfmt_display(1e-7, buf, sizeof buf), "0.0000001");
    CHECK(strlen(rustfmt_display(5e-324, buf, sizeof buf)) == 326 && buf[325] == '5');
    CHECK_STR(rustfmt_display(1125899906842624.25, buf, sizeof buf), "1125899906842624.3");
    CHECK_STR(rustfmt_display(INFINITY, buf, sizeof buf), "inf");
    CHECK_STR(rustfmt_display(NAN, buf, sizeof buf), "NaN");
    CHECK_STR(rustfmt_fixed(0.0625, 3, buf, sizeof buf), "0.062");
    CHECK_STR(rustfmt_fixed(0.1875, 3, buf, sizeof buf), "0.188");
    CHECK_STR(rustfmt_fixed(-0.0, 3, buf, sizeof buf), "-0.000");
    CHECK_STR(rustfmt_fixed(2.675, 3, buf, sizeof buf), "2.675");
    CHECK_STR(rustfmt_fixed(1.0005, 3, buf, sizeof buf), "1.000");
}

static void test_json_numbers(void) {
    char err[256];
    json_value v;
    CHECK(json_parse("18446744073709551615", 20, &v, err, sizeof err));
    CHECK(v.u.number.kind == JSON_NUM_U64 && v.u.number.as.u == UINT64_MAX);
    CHECK(json_parse("-9223372036854775808", 20, &v, err, sizeof err));
    CHECK(v.u.number.kind == JSON_NUM_I64 && v.u.number.as.i == INT64_MIN);
    CHECK(json_parse("-0", 2, &v, err, sizeof err));
    CHECK(v.u.number.kind == JSON_NUM_F64 && signbit(v.u.number.as.f));
    CHECK(json_parse("1.0", 3, &v, err, sizeof err) && v.u.number.kind == JSON_NUM_F64);
    CHECK(json_parse("1e2", 3, &v, err, sizeof err) && v.u.number.as.f == 100.0);
    CHECK(!json_parse("1e400", 5, &v, err, sizeof err));
    CHECK(json_parse("1e-400", 6, &v, err, sizeof err) && v.u.number.as.f == 0.0);
    CHECK(!json_parse("01", 2, &v, err, sizeof err));
    CHECK(!json_parse("1.", 2, &v, err, sizeof err));
    CHECK(!json_parse("[1,]", 4, &v, err, sizeof err));
    CHECK(!json_parse("{} x", 4, &v, err, sizeof err));
    CHECK_STR(err, "trailing characters at line 1 column 4");
    CHECK(json_parse("\"\\ud83d\\ude00\\u0000\"", 20, &v, err, sizeof err));
    CHECK(v.u.string.len == 5 && memcmp(v.u.string.ptr, "\xF0\x9F\x98\x80\0", 5) == 0);
    json_free(&v);
    CHECK(!json_parse("\"\\ud83d\"", 8, &v, err, sizeof err));
}

static void test_validate(void) {
    validate_is(with_rules("\"rules\": [{\"direction\": \"up\", \"threshold\": 500, "
                           "\"step\": {\"by\": 1}, \"limit\": 10}, {\"direction\": \"down\", "
                           "\"threshold\": 100, \"step\": {\"to\": 2}, \"limit\": 2}]"),
                "");
    validate_is(with_rules("\"rules\": []"), "rules must not be empty");
    validate_is(with_rules("\"window_secs\": 0, \"rules\": []"),
                "window_secs must be at least 1");
    validate_is(with_rules("\"rules\": [{\"direction\": \"down\", \"threshold\": 1, "
                           "\"step\": {\"by\": 1}, \"limit\": 3}]"),
                "rules[0].step.by must be negative for a down rule");
    validate_is(with_rules("\"rules\": [{\"direction\": \"up\", \"threshold\": 1, "
                           "\"step\": {\"by\": 0}, \"limit\": 3}]"),
                "rules[0].step.by must be positive for an up rule");
    validate_is("{\"target\": {\"namespace\": \"\", \"name\": \"a\"}, "
                "\"source\": {\"query\": \"\"}, \"rules\": []}",
                "target must name a namespace and a workload");
    validate_is("{\"target\": {\"namespace\": \"a\", \"name\": \"b\"}, "
                "\"source\": {\"query\": \" \\u3000\\t\"}, \"rules\": []}",
                "source.query must not be empty");
    validate_is("{\"target\": {\"namespace\": \"a\", \"name\": \"b\"}, "
                "\"source\": {\"events\": {\"service\": \"\"}}, \"rules\": []}",
                "source.events.service must not be empty");
    validate_refuses_parse(with_rules("\"rules\": [], \"extra\": 1"));
    validate_refuses_parse(with_rules("\"rules\": [], \"rules\": []"));
    validate_refuses_parse(with_rules("\"window_secs\": 1.0, \"rules\": []"));
    validate_refuses_parse(with_rules("\"cooldown_secs\": -1, \"rules\": []"));
    validate_refuses_parse(with_rules("\"rules\": [{\"direction\": \"up\", \"threshold\": 1, "
                                      "\"step\": {\"to\": 4294967296}, \"limit\": 3}]"));
    validate_refuses_parse(with_rules("\"rules\": [{\"direction\": \"up\", \"threshold\": 1, "
                                      "\"step\": {\"by\": -0}, \"limit\": 3}]"));
    validate_refuses_parse(with_rules("\"rules\": [{\"direction\": \"up\", \"threshold\": 1, "
                                      "\"step\": {\"by\": 1}, \"limit\": 3, \"x\": 0}]"));
    validate_refuses_parse("");
}

static const char *UP_DOWN =
    "\"cooldown_secs\": 60, \"rules\": ["
    "{\"direction\": \"up\", \"threshold\": 54.0, \"step\": {\"by\": 2}, \"limit\": 5},"
    "{\"direction\": \"down\", \"threshold\": 30.0, \"step\": {\"by\": -1}, \"limit\": 2}]";

static void tick_with(const char *json, bool want_ok) {
    char err[512];
    CHECK(call(exports_policy_tick, json, err, sizeof err) == want_ok);
}

static void test_tick_scales_up_and_records_instant(void) {
    reset_host();
    host.series_count = 3; /* (10 + 50) + 50.25 + a silent host: 110.25 / 2 reporting */
    host.sample_count[0] = 2;
    host.samples[0][0] = 10;
    host.samples[0][1] = 50;
    host.sample_count[1] = 1;
    host.samples[1][0] = 50.25;
    host.replicas = 1;
    tick_with(with_rules(UP_DOWN), true);
    CHECK_STR(host.calls, "now state.get state.get events workload scale state.set ");
    CHECK_STR(host.reason, "rule 0: value 55.125 > threshold 54; 1 -> 3");
    CHECK(host.scaled_to == 3 && host.window_ms == 60000);
    /* The instant is pending until the next tick reads its outcome. */
    CHECK(!host.has_state);
    CHECK(host.pending_len == 8 && host.pending[0] == (1000000 & 0xFF) &&
          host.pending[2] == (1000000 >> 16));
}

static void test_tick_cooldown_only_after_an_applied_change(void) {
    uint64_t asked = 1000000 - 1000;
    /* Applied (1 -> 3): the cooldown starts at the instant it was asked. */
    reset_host();
    set_instant(host.pending, &host.pending_len, &host.has_pending, asked);
    host.has_previous = true;
    host.previous_at = asked;
    host.previous_current = 1;
    host.previous_applied = 3;
    tick_with(with_rules(UP_DOWN), true);
    CHECK_STR(host.calls, "now state.get state.get state.delete previous state.set log.debug ");
    CHECK(host.has_state && !host.has_pending && host.state[0] == (asked & 0xFF));

    /* Refused by the backend: no cooldown, the tick decides again. */
    reset_host();
    set_instant(host.pending, &host.pending_len, &host.has_pending, asked);
    host.has_previous = true;
    host.previous_at = asked;
    host.previous_current = 1;
    host.previous_applied = 1;
    host.previous_failed = true;
    tick_with(with_rules(UP_DOWN), true);
    CHECK_STR(host.calls, "now state.get state.get state.delete previous log.info events log.info ");
    CHECK(!host.has_state && !host.has_pending);

    /* No record (the host restarted): assumed applied. */
    reset_host();
    set_instant(host.pending, &host.pending_len, &host.has_pending, asked);
    tick_with(with_rules(UP_DOWN), true);
    CHECK_STR(host.calls, "now state.get state.get state.delete previous state.set log.debug ");
}

static void test_tick_cooldown(void) {
    reset_host();
    host.has_state = true;
    host.state_len = 8;
    uint64_t last = host.now - 59999; /* cooldown 60 s still runs */
    for (int i = 0; i < 8; i++) {
        host.state[i] = (uint8_t)(last >> (8 * i));
    }
    tick_with(with_rules(UP_DOWN), true);
    CHECK_STR(host.calls, "now state.get state.get log.debug ");
    CHECK_STR(host.last_log, "in cooldown");

    /* Malformed state (not 8 bytes) counts as absent. */
    reset_host();
    host.has_state = true;
    host.state_len = 3;
    tick_with(with_rules(UP_DOWN), true);
    CHECK_STR(host.calls, "now state.get state.get events log.info ");
    CHECK_STR(host.last_log, "no hosts reporting in the window; no decision");
}

static void test_tick_at_limit_and_down(void) {
    reset_host();
    host.series_count = 1;
    host.sample_count[0] = 1;
    host.samples[0][0] = 0.0625;
    host.replicas = 2;
    tick_with(with_rules(UP_DOWN), true);
    CHECK_STR(host.calls, "now state.get state.get events workload log.debug ");
    CHECK_STR(host.last_log, "rule 1 fired at 0.062 but replicas are at its limit");

    reset_host();
    host.series_count = 1;
    host.sample_count[0] = 1;
    host.samples[0][0] = 29.99951;
    host.replicas = 9;
    tick_with(with_rules(UP_DOWN), true);
    CHECK_STR(host.reason, "rule 1: value 30.000 < threshold 30; 9 -> 8");
}

static void test_tick_query_and_errors(void) {
    const char *query = "{\"target\": {\"namespace\": \"web\", \"name\": \"api\"},"
                        " \"source\": {\"query\": \"x\"}, \"window_secs\": 30,"
                        " \"rules\": [{\"direction\": \"up\", \"threshold\": 0.1,"
                        " \"step\": {\"to\": 50}, \"limit\": 20}]}";
    char err[512];
    reset_host();
    host.series_count = 1;
    host.sample_count[0] = 1;
    host.samples[0][0] = -0.0; /* sums fold from -0.0, as Rust's f64 Sum does */
    host.replicas = 3;
    tick_with(query, true);
    CHECK(host.range_start == host.now - 30000 && host.range_end == host.now);
    CHECK_STR(host.calls, "now state.get state.get query-range workload ");

    reset_host();
    host.now = 5; /* the window start saturates at 0 */
    host.series_count = 1;
    host.sample_count[0] = 1;
    host.samples[0][0] = 1.0;
    host.replicas = 3;
    tick_with(query, true);
    CHECK(host.range_start == 0);
    CHECK_STR(host.reason, "rule 0: value 1.000 > threshold 0.1; 3 -> 20");

    reset_host();
    host.read_error = SCALEHOST_POLICY_TYPES_HOST_ERROR_UNAVAILABLE;
    CHECK(!call(exports_policy_tick, query, err, sizeof err));
    CHECK_STR(err, "unavailable: nope");

    /* tick parses but does not validate. */
    reset_host();
    CHECK(!call(exports_policy_tick, "{}", err, sizeof err));
    CHECK_STR(err, "invalid config: missing field `target` at line 1 column 2");
    CHECK_STR(host.calls, "");
}

int main(void) {
    test_formatting();
    test_json_numbers();
    test_validate();
    test_tick_scales_up_and_records_instant();
    test_tick_cooldown_only_after_an_applied_change();
    test_tick_cooldown();
    test_tick_at_limit_and_down();
    test_tick_query_and_errors();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all tests passed\n");
    return 0;
}
