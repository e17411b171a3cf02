"""Numbers printed the way Rust's `format!` prints an f64, for byte-identical scale reasons."""

import math
from decimal import Decimal
from fractions import Fraction


def display(x: float) -> str:
    """Rust's `{}`: the shortest decimal that reads back as `x`, never in exponent notation and
    without a trailing `.0`: 54.0 -> "54", 1e21 -> "1000000000000000000000", -0.0 -> "-0"."""
    if not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    shortest = Decimal(repr(x)).normalize()
    # When two equally short decimals are equally close to x (1702799836579854.25 -> ".2" or
    # ".3"), Python's repr takes the even last digit, Rust the one further from zero.
    exact = Fraction(x)
    if Fraction(shortest) != exact:
        unit = Decimal((0, (1,), shortest.as_tuple().exponent))
        away = shortest + unit if x > 0 else shortest - unit
        if float(away) == x and abs(Fraction(away) - exact) == abs(Fraction(shortest) - exact):
            shortest = away
    return format(shortest, "f")


def fixed(x: float, decimals: int) -> str:
    """Rust's `{:.N}`: exactly rounded from the binary value, ties to even, like Python's `f`."""
    if math.isnan(x):
        return "NaN"  # Python writes "nan"
    return f"{x:.{decimals}f}"
