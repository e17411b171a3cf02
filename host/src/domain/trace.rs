//! Per-minute request traces (CSV `minute,requests[,…]`) that drive simulated load and backtests.
//!
//! Rows with a `valid` column equal to 0 are skipped, extra columns ignored; see
//! [`Trace::from_csv_str`]. Parsing only: the file is read at the edge
//! ([`read_trace`](crate::backends::simulated::read_trace)).

use std::path::{Path, PathBuf};

/// One minute in milliseconds: a trace has one row per minute.
pub const MINUTE_MS: u64 = 60_000;

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error("cannot read trace {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The header lacks a `requests` column.
    #[error("{path}: bad header {header:?}: expected a `requests` column (e.g. `minute,requests`)")]
    Header {
        /// The file.
        path: PathBuf,
        /// The header line as read.
        header: String,
    },
    /// A row's value is not a number.
    #[error("{path}:{line}: {column} is not a non-negative number: {value:?}")]
    Value {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The column at fault.
        column: &'static str,
        /// What was there.
        value: String,
    },
    /// No valid rows.
    #[error("{path}: no valid rows")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Requests per minute, valid minutes only, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Requests in each valid minute.
    pub requests: Vec<f64>,
}

impl Trace {
    /// Parses trace CSV text: a header naming a `requests` column (and optionally `valid`), then
    /// one row per minute; rows whose `valid` is `0` are skipped. `path` only names the source in
    /// errors (files are read by [`read_trace`](crate::backends::simulated::read_trace)).
    pub fn from_csv_str(text: &str, path: &Path) -> Result<Trace, TraceError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let header = lines.next().map(|(_, h)| h).unwrap_or_default();
        let columns: Vec<&str> = header.split(',').map(str::trim).collect();
        let requests_col = columns
            .iter()
            .position(|c| *c == "requests")
            .ok_or_else(|| TraceError::Header {
                path: path.to_owned(),
                header: header.to_owned(),
            })?;
        let valid_col = columns.iter().position(|c| *c == "valid");
        let mut requests = Vec::new();
        for (index, line) in lines {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let field = |col: usize, column: &'static str| -> Result<f64, TraceError> {
                let raw = fields.get(col).copied().unwrap_or("");
                raw.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| TraceError::Value {
                        path: path.to_owned(),
                        line: index + 1,
                        column,
                        value: raw.into(),
                    })
            };
            if let Some(col) = valid_col {
                if field(col, "valid")? == 0.0 {
                    continue;
                }
            }
            requests.push(field(requests_col, "requests")?);
        }
        if requests.is_empty() {
            return Err(TraceError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Trace { requests })
    }

    /// Requests in minute `minute`, wrapping around at the end so a trace can drive a host
    /// forever.
    pub fn at_minute(&self, minute: u64) -> f64 {
        let len = self.requests.len() as u64;
        self.requests[(minute % len) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_invalid_rows_and_ignores_extra_columns() {
        let t = Trace::from_csv_str(
            "minute,ts,requests,valid\n0,a,5,1\n1,b,0,0\n2,c,7,1\n",
            Path::new("t.csv"),
        )
        .expect("parses");
        assert_eq!(t.requests, vec![5.0, 7.0]);
        assert_eq!(t.at_minute(3), 7.0);
    }

    #[test]
    fn names_the_line_of_a_bad_value() {
        let err =
            Trace::from_csv_str("minute,requests\n0,5\n1,x\n", Path::new("t.csv")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv:3: requests is not a non-negative number: \"x\""
        );
    }

    #[test]
    fn refuses_a_header_without_requests_and_an_empty_trace() {
        let err = Trace::from_csv_str("minute,count\n0,5\n", Path::new("t.csv")).unwrap_err();
        assert!(matches!(err, TraceError::Header { .. }), "{err}");
        let err = Trace::from_csv_str("minute,requests\n", Path::new("t.csv")).unwrap_err();
        assert!(matches!(err, TraceError::Empty { .. }), "{err}");
    }
}
