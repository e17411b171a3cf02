"""Reading a policy config the way the Rust SDK's serde_json + `#[derive(Deserialize)]` reads it.

The Rust threshold-cooldown policy accepts exactly the configs serde accepts, so this Python port
must too, and must see the same numbers. Python's `json` differs in ways that matter here:

- numbers: serde_json (without its `float_roundtrip` feature) builds a float from at most 19-20
  significant digits and one multiplication or division by a power of ten, which is sometimes
  one ulp off the correctly rounded value Python's `float()` gives; `-0` is a float in serde,
  NaN/Infinity are not JSON, and numbers too large for an f64 are errors rather than `inf`;
- objects: repeated keys are an error (serde refuses a duplicate field), not "last one wins";
- strings: an unpaired UTF-16 surrogate escape (`"\\ud800"`) is an error;
- shapes: a serde struct may also be written as an array of its fields in declaration order, and
  a unit enum variant as `{"name": null}` as well as `"name"`.

`loads()` covers the first three; `struct()` and `variant()` the last. Every refusal raises
`ConfigError`, which the policy reports as `invalid config: ...`.
"""

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
I64_MIN = -(2**63)

# serde_json's table: 1e0 ..= 1e308, each the correctly rounded double.
_POW10 = [float(f"1e{i}") for i in range(309)]
_NUMBER = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([-+]?)([0-9]+))?")


class ConfigError(ValueError):
    """A config serde would refuse; the message says where and why."""


def loads(text: str) -> Any:
    """Parses JSON into dicts, lists, str, int, float, bool and None, as serde_json would see it."""
    try:
        return json.loads(
            text,
            parse_int=_number,
            parse_float=_number,
            parse_constant=_not_json,
            object_pairs_hook=_object,
        )
    except ConfigError:
        raise
    except (ValueError, RecursionError) as e:
        raise ConfigError(str(e)) from None


def _not_json(name: str):
    raise ConfigError(f"{name} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    for key in keys:
        _check_text(key)
    if len(set(keys)) != len(keys):
        repeated = next(k for k in keys if keys.count(k) > 1)
        raise ConfigError(f"duplicate field `{repeated}`")
    return dict(pairs)


def _check_text(s: str) -> str:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("lone surrogate in string escape") from None
    return s


def _number(literal: str) -> int | float:
    """serde_json's reading of one number literal: an int when it is an integer that fits an
    i64 or a u64 (`-0` excepted), else a float built serde's way."""
    m = _NUMBER.fullmatch(literal)
    if m is None:  # Python's pure-Python scanner would let other Unicode digits through
        raise ConfigError(f"invalid number {literal!r}")
    sign, whole, fraction, exp_sign, exp_digits = m.groups()
    negative = sign == "-"

    # The significand keeps digits while it fits a u64; further whole digits only scale it,
    # further fraction digits are dropped.
    significand, exponent, full = 0, 0, False
    for digit in map(int, whole):
        if full or significand * 10 + digit > U64_MAX:
            full = True
            exponent += 1
        else:
            significand = significand * 10 + digit
    if fraction is None and exp_digits is None and not full:
        if not negative:
            return significand
        if significand == 0:
            return -0.0
        return -significand if -significand >= I64_MIN else -float(significand)
    full = False  # the fraction keeps filling the significand while it fits, even after overflow
    for digit in map(int, fraction or ""):
        if full or significand * 10 + digit > U64_MAX:
            full = True
        else:
            significand = significand * 10 + digit
            exponent -= 1
    if exp_digits is not None:
        exp_digits = exp_digits.lstrip("0") or "0"
        exp = int(exp_digits) if len(exp_digits) <= 10 else I32_MAX + 1
        if exp > I32_MAX:
            # An exponent past i32: zero or an error, never infinity.
            if significand != 0 and exp_sign != "-":
                raise ConfigError(f"number out of range: {literal}")
            return -0.0 if negative else 0.0
        exponent = exponent - exp if exp_sign == "-" else exponent + exp
        exponent = max(I32_MIN, min(I32_MAX, exponent))  # saturating, as serde's i32 is
    return _f64_from_parts(negative, significand, exponent, literal)


def _f64_from_parts(negative: bool, significand: int, exponent: int, literal: str) -> float:
    f = float(significand)
    while True:
        if abs(exponent) < len(_POW10):
            if exponent >= 0:
                f *= _POW10[exponent]
                if math.isinf(f):
                    raise ConfigError(f"number out of range: {literal}")
            else:
                f /= _POW10[-exponent]
            break
        if f == 0.0:
            break
        if exponent >= 0:
            raise ConfigError(f"number out of range: {literal}")
        f /= 1e308
        exponent += 308
    return -f if negative else f


# Typed readers. `where` names the value for the message, e.g. `rules[0].step` ("" for the top).


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def struct(value: Any, where: str, fields: Sequence[str], defaults: Mapping[str, Any] = {}) -> dict[str, Any]:
    """A serde struct with `deny_unknown_fields`: an object of known keys, or an array of the
    fields in order. Missing fields take their default or are an error."""
    if isinstance(value, dict):
        given = value
        unknown = [key for key in value if key not in fields]
        if unknown:
            raise ConfigError(
                f"{_at(where)}unknown field `{unknown[0]}`, expected one of {_names(fields)}"
            )
    elif isinstance(value, list):
        if len(value) > len(fields):
            raise ConfigError(f"{_at(where)}expected at most {len(fields)} elements")
        given = dict(zip(fields, value))
    else:
        raise ConfigError(f"{_at(where)}expected an object, got {_kind(value)}")
    out = {}
    for field in fields:
        if field in given:
            out[field] = given[field]
        elif field in defaults:
            out[field] = defaults[field]
        else:
            raise ConfigError(f"{_at(where)}missing field `{field}`")
    return out


def variant(value: Any, where: str, unit: Sequence[str] = (), payload: Sequence[str] = ()) -> tuple[str, Any]:
    """An externally tagged serde enum: `"name"` or `{"name": null}` for a unit variant,
    `{"name": payload}` for the others. Returns (name, payload or None)."""
    if isinstance(value, str):
        name, inner = value, None
        if name in payload:
            raise ConfigError(f"{_at(where)}`{name}` needs a value: {{\"{name}\": ...}}")
    elif isinstance(value, dict) and len(value) == 1:
        ((name, inner),) = value.items()
        if name in unit and inner is not None:
            raise ConfigError(f"{where}.{name}: expected null, got {_kind(inner)}")
    else:
        raise ConfigError(f"{_at(where)}expected one of {_names([*unit, *payload])}")
    if name not in unit and name not in payload:
        raise ConfigError(f"{_at(where)}unknown variant `{name}`, expected {_names([*unit, *payload])}")
    return name, inner


def string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{_at(where)}expected a string, got {_kind(value)}")
    return _check_text(value)


def integer(value: Any, where: str, low: int, high: int) -> int:
    """A JSON integer within [low, high]; 1.0 and -0 are floats, as in serde_json."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{_at(where)}expected an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise ConfigError(f"{_at(where)}{value} is out of range {low}..={high}")
    return value


def number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{_at(where)}expected a number, got {_kind(value)}")
    return float(value)


def array(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{_at(where)}expected an array, got {_kind(value)}")
    return value


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    return "an array" if isinstance(value, list) else "an object"
