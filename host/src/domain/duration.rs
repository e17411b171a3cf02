//! Human durations in configs: `"250ms"`, `"15s"`, `"5m"`, `"2h"`, `"1d"` (serde helpers).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// The longest duration a config may hold: far past any use, and small enough that its
/// milliseconds fit a `u64` (so that `as_millis() as u64` never wraps).
pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses `"<number><unit>"` with unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("invalid duration {text:?}: expected e.g. \"15s\", \"200ms\", \"5m\"")
    })?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: unit must be ms, s, m, h or d"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| *d <= MAX)
        .ok_or_else(|| format!("invalid duration {text:?}: too large (at most 100 years)"))
}

/// Formats a duration the way [`parse`] reads it.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        format!("{ms}ms")
    } else if ms % 86_400_000 == 0 && ms > 0 {
        format!("{}d", ms / 86_400_000)
    } else if ms % 3_600_000 == 0 && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// Serde `with` module for `Duration` fields.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// Serde `with` module for `Duration` fields.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// Serde `with` module for `Option<Duration>` fields (absent or `null` is `None`).
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `Some` as [`super::format`] does.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads what [`super::parse`] reads, or nothing.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| super::parse(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        for (text, d) in [
            ("250ms", 250),
            ("15s", 15_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_millis(d)));
            assert_eq!(format(Duration::from_millis(d)), text);
        }
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(format(Duration::from_secs(2 * 86400)), "2d");
        assert!(parse("15").unwrap_err().contains("unit"));
        assert!(parse("s").unwrap_err().contains("invalid duration"));
        assert_eq!(parse("36500d"), Ok(MAX));
        assert!(parse("36501d").unwrap_err().contains("too large"));
        assert!(
            parse("99999999999999999999999d")
                .unwrap_err()
                .contains("too large")
        );
    }
}
