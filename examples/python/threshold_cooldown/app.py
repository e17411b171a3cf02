"""threshold-cooldown in Python: threshold rules with a cooldown, as a scalehost policy component.

A port of plugins/threshold-cooldown (Cloudify's Riemann "scale" policy) that decides exactly as
the Rust build does, tick for tick. Each tick reads a per-host window sum of a metric (every
sample in the window added up, divided by the number of reporting hosts), fires the first rule
whose threshold is crossed, clamps the result to the rule's limit, then stays quiet for
`cooldown_secs`. Config: plugins/threshold-cooldown/README.md.

Built with componentize-py against wit/policy@0.2.0 (world `policy`): the class `WitWorld` below
is the component's export. The host runs every call in a fresh instance, so nothing kept in a
Python global survives between ticks; the last scale instant lives in `state`.
"""

import math
import operator
from dataclasses import dataclass
from functools import reduce
from collections.abc import Iterable
from typing import NamedTuple

import wit_world
from componentize_py_types import Err
from wit_world.imports import actuation, clock, log, metrics, outcomes, state
from wit_world.imports.types import (
    HostError_Forbidden,
    HostError_Invalid,
    HostError_NotFound,
    HostError_Unavailable,
    ScaleChange_To,
    Series,
    WorkloadKind,
    WorkloadRef,
)

import rust_fmt
from serde_json_compat import (
    I32_MAX,
    I32_MIN,
    U32_MAX,
    U64_MAX,
    ConfigError,
    array,
    integer,
    loads,
    number,
    string,
    struct,
    variant,
)

LAST_SCALE_KEY = "last_scale_ms"  # the applied scale's instant: host ms, u64 little-endian
PENDING_KEY = "pending_scale_ms"  # a scale asked for, not yet known applied (same encoding)
QUERY_STEP_MS = 15_000  # resolution of the range query of a `query` source

# What Rust's str::trim strips (Unicode White_Space). A bare str.strip() also strips
# U+001C..U+001F, and would refuse a query the Rust build accepts.
_RUST_WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


# --- Configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Events:
    """Pushed events of a service, one series per host."""

    service: str


@dataclass(frozen=True)
class Query:
    """A PromQL range query over the window at 15 s steps."""

    promql: str


@dataclass(frozen=True)
class By:
    """Add (positive) or remove (negative) replicas."""

    replicas: int


@dataclass(frozen=True)
class To:
    """Scale to exactly this many replicas."""

    replicas: int


@dataclass(frozen=True)
class Rule:
    up: bool  # fires above the threshold (else: below it)
    threshold: float
    step: By | To
    limit: int  # most replicas an up rule reaches, fewest a down rule leaves

    def fires(self, value: float) -> bool:
        return value > self.threshold if self.up else value < self.threshold


@dataclass(frozen=True)
class Config:
    target: WorkloadRef
    source: Events | Query
    window_secs: int
    rules: list[Rule]
    cooldown_secs: int


def parse_config(text: str) -> Config:
    """Parses the binding's JSON; refuses what the Rust build's serde would refuse."""
    top = struct(
        loads(text),
        "",
        ("target", "source", "window_secs", "rules", "cooldown_secs"),
        {"window_secs": 60, "cooldown_secs": 120},
    )
    return Config(
        target=_target(top["target"]),
        source=_source(top["source"]),
        window_secs=integer(top["window_secs"], "window_secs", 0, U64_MAX),
        rules=[_rule(r, f"rules[{i}]") for i, r in enumerate(array(top["rules"], "rules"))],
        cooldown_secs=integer(top["cooldown_secs"], "cooldown_secs", 0, U64_MAX),
    )


def _target(value) -> WorkloadRef:
    fields = struct(value, "target", ("kind", "namespace", "name"), {"kind": "deployment"})
    kind, _ = variant(fields["kind"], "target.kind", unit=("deployment", "stateful-set"))
    return WorkloadRef(
        kind=WorkloadKind.DEPLOYMENT if kind == "deployment" else WorkloadKind.STATEFUL_SET,
        namespace=string(fields["namespace"], "target.namespace"),
        name=string(fields["name"], "target.name"),
    )


def _source(value) -> Events | Query:
    kind, inner = variant(value, "source", payload=("events", "query"))
    if kind == "query":
        return Query(string(inner, "source.query"))
    events = struct(inner, "source.events", ("service",))
    return Events(string(events["service"], "source.events.service"))


def _rule(value, where: str) -> Rule:
    fields = struct(value, where, ("direction", "threshold", "step", "limit"))
    direction, _ = variant(fields["direction"], f"{where}.direction", unit=("up", "down"))
    step, amount = variant(fields["step"], f"{where}.step", payload=("by", "to"))
    return Rule(
        up=direction == "up",
        threshold=number(fields["threshold"], f"{where}.threshold"),
        step=(
            By(integer(amount, f"{where}.step.by", I32_MIN, I32_MAX))
            if step == "by"
            else To(integer(amount, f"{where}.step.to", 0, U32_MAX))
        ),
        limit=integer(fields["limit"], f"{where}.limit", 0, U32_MAX),
    )


def validate(config: Config) -> str | None:
    """What is wrong with a parsed config, or None; the Rust build's checks, in its order."""
    if not config.target.namespace or not config.target.name:
        return "target must name a namespace and a workload"
    match config.source:
        case Events(service) if not service:
            return "source.events.service must not be empty"
        case Query(promql) if not promql.strip(_RUST_WHITESPACE):
            return "source.query must not be empty"
    if config.window_secs == 0:
        return "window_secs must be at least 1"
    if not config.rules:
        return "rules must not be empty"
    for i, rule in enumerate(config.rules):
        if not math.isfinite(rule.threshold):
            return f"rules[{i}].threshold must be finite"
        match rule.step:
            case By(n) if rule.up and n <= 0:
                return f"rules[{i}].step.by must be positive for an up rule"
            case By(n) if not rule.up and n >= 0:
                return f"rules[{i}].step.by must be negative for a down rule"
    return None


# --- Decision --------------------------------------------------------------------------------


def _add_up(values: Iterable[float]) -> float:
    # Left to right from -0.0, as Rust's f64 Sum does. Python's sum() compensates rounding error
    # since 3.12 and would differ from the Rust build in the last bits.
    return reduce(operator.add, values, -0.0)


def per_host_value(series: list[Series]) -> float | None:
    """Every sample of every series added up, over the number of series that reported at least
    one sample; None when no host reported."""
    reporting = sum(1 for s in series if s.samples)
    if reporting == 0:
        return None
    return _add_up(_add_up(sample.value for sample in s.samples) for s in series) / reporting


def in_cooldown(last_scale_ms: int | None, now_ms: int, cooldown_secs: int) -> bool:
    # u64 arithmetic in the host saturates; Python ints do not overflow, so clamp instead.
    return last_scale_ms is not None and now_ms < min(last_scale_ms + cooldown_secs * 1000, U64_MAX)


def pending_applied(pending_ms: int, previous: "outcomes.TickOutcomes | None", target: WorkloadRef) -> bool:
    """Whether the scale asked for at `pending_ms` changed `target`, from the outcomes of the
    binding's last applied tick; without them (a restarted host) or when they are another
    tick's, assumed applied."""
    if previous is None or previous.at != pending_ms:
        return True
    return any(
        s.target == target and s.error is None and s.applied != s.current for s in previous.scales
    )


def _instant(stored: bytes | None) -> int | None:
    return int.from_bytes(stored, "little") if stored is not None and len(stored) == 8 else None


class Decision(NamedTuple):
    rule: int  # index of the rule that fired
    replicas: int | None  # what to scale to; None when the rule is already at its limit


def decide(rules: list[Rule], value: float, current: int) -> Decision | None:
    """Applies the first rule that fires; None when none does. An up rule never lowers replicas
    nor passes its limit; a down rule never raises them nor goes below its limit."""
    fired = next((i for i, rule in enumerate(rules) if rule.fires(value)), None)
    if fired is None:
        return None
    rule = rules[fired]
    match rule.step:
        case By(n):
            stepped = min(max(current + n, 0), U32_MAX)
        case To(n):
            stepped = n
    if rule.up:
        wanted = min(stepped, rule.limit)
        moves = wanted > current
    else:
        wanted = max(stepped, rule.limit)
        moves = wanted < current
    return Decision(fired, wanted if moves else None)


def run(config: Config) -> None:
    """One decision; a host call that fails raises Err(HostError_*)."""
    now = clock.now()
    last = _instant(state.get(LAST_SCALE_KEY))
    # The cooldown starts only where the host applied a change: settle the last intent.
    pending = _instant(state.get(PENDING_KEY))
    if pending is not None:
        state.delete(PENDING_KEY)
        if pending_applied(pending, outcomes.previous(), config.target):
            last = pending
            state.set(LAST_SCALE_KEY, pending.to_bytes(8, "little"))
        else:
            log.log(log.Level.INFO, "the last scale was not applied; no cooldown")
    # Checked before any read so that a cooling-down tick costs one state lookup.
    if in_cooldown(last, now, config.cooldown_secs):
        log.log(log.Level.DEBUG, "in cooldown")
        return
    window_ms = min(config.window_secs * 1000, U64_MAX)
    match config.source:
        case Events(service):
            series = metrics.events(service, window_ms)
        case Query(promql):
            series = metrics.query_range(promql, max(now - window_ms, 0), now, QUERY_STEP_MS)
    value = per_host_value(series)
    if value is None:
        log.log(log.Level.INFO, "no hosts reporting in the window; no decision")
        return
    current = metrics.workload(config.target).replicas
    decision = decide(config.rules, value, current)
    if decision is None:
        return
    if decision.replicas is None:
        log.log(
            log.Level.DEBUG,
            f"rule {decision.rule} fired at {rust_fmt.fixed(value, 3)} but replicas are at its limit",
        )
        return
    rule = config.rules[decision.rule]
    reason = (
        f"rule {decision.rule}: value {rust_fmt.fixed(value, 3)} {'>' if rule.up else '<'} "
        f"threshold {rust_fmt.display(rule.threshold)}; {current} -> {decision.replicas}"
    )
    actuation.scale(config.target, ScaleChange_To(decision.replicas), reason)
    state.set(PENDING_KEY, now.to_bytes(8, "little"))


# --- Exports ---------------------------------------------------------------------------------

_HOST_ERRORS = {
    HostError_Forbidden: "forbidden",
    HostError_NotFound: "not found",
    HostError_Invalid: "invalid",
    HostError_Unavailable: "unavailable",
}


def _parse(text: str) -> Config:
    try:
        return parse_config(text)
    except ConfigError as e:
        raise Err(f"invalid config: {e}") from None


class WitWorld(wit_world.WitWorld):
    """The component's exports. Raising `Err(message)` returns `error(message)` to the host."""

    def validate_config(self, config: str) -> None:
        problem = validate(_parse(config))
        if problem is not None:
            raise Err(problem)

    def tick(self, config: str) -> None:
        parsed = _parse(config)  # parsed again, but not re-validated, as in the Rust build
        try:
            run(parsed)
        except Err as e:
            # A host call refused: the bindings raise Err(HostError_*); fail the tick with it.
            kind = _HOST_ERRORS.get(type(e.value))
            if kind is None:
                raise
            raise Err(f"{kind}: {e.value.value}") from None
