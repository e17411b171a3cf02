//! PromQL as the host reads it: one parser (`promql-parser`) for tenants' queries and for the
//! subset the embedded backends answer.
//!
//! Start with [`scope_query`]: every PromQL query a policy sends is parsed, checked against its
//! tenant's grants and [`QueryLimits`], and rewritten so that each selector reads only the
//! tenant's namespaces (as prom-label-proxy does); the backend receives the rewritten text.
//! [`evaluate`] and [`evaluate_range`] answer the subset that the simulated cluster and the
//! backtest model serve, over a [`SeriesSource`].

mod eval;
mod scope;

use promql_parser::parser::Expr;

use crate::domain::cluster::BackendError;

pub use eval::{
    Labels, Selector, SeriesSource, WORKLOAD_METRICS, evaluate, evaluate_range, workload_labels,
};
pub use scope::{
    CLUSTER_WIDE_PREFIXES, NAMESPACE_LABEL, QueryGrant, QueryLimits, QueryRate, QueryWindow,
    scope_query,
};

/// The longest query text accepted, bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// The deepest nesting of parentheses, brackets and braces accepted.
pub const MAX_NESTING: usize = 32;
/// The most operators (and signs) one query may hold.
pub const MAX_OPERATORS: usize = 256;

/// Parses `text` after a cheap pre-check that bounds its size and depth: the tree is walked
/// (and dropped) recursively, so a hostile `((((…))))` or `a+a+a+…` must never reach the parser.
pub(crate) fn parse(text: &str) -> Result<Expr, BackendError> {
    let invalid = |why: String| BackendError::Invalid(format!("query {:?}: {why}", short(text)));
    if text.len() > MAX_QUERY_BYTES {
        return Err(invalid(format!(
            "{} bytes, over the {MAX_QUERY_BYTES} a query may have",
            text.len()
        )));
    }
    let (depth, operators) = shape(text);
    if depth > MAX_NESTING {
        return Err(invalid(format!(
            "nested {depth} deep, over the {MAX_NESTING} levels a query may have"
        )));
    }
    if operators > MAX_OPERATORS {
        return Err(invalid(format!(
            "{operators} operators, over the {MAX_OPERATORS} a query may have"
        )));
    }
    // The parser panics on some inputs (a duration of `1e30` seconds): a panic is a bad query,
    // not a dead binding.
    match std::panic::catch_unwind(|| promql_parser::parser::parse(text)) {
        Ok(parsed) => parsed.map_err(invalid),
        Err(_) => Err(invalid(
            "the parser could not read it (a number out of range?)".into(),
        )),
    }
}

/// The deepest nesting and the number of operator characters outside strings and braces.
fn shape(text: &str) -> (usize, usize) {
    let (mut depth, mut deepest, mut operators) = (0usize, 0usize, 0usize);
    let mut braces = 0usize;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            // A comment runs to the end of the line, as the lexer reads it.
            '#' => {
                for s in chars.by_ref() {
                    if s == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' | '`' => {
                // Skip the string, escapes included (backquoted strings have none).
                while let Some(s) = chars.next() {
                    if s == '\\' && c != '`' {
                        chars.next();
                    } else if s == c {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
                braces += usize::from(c == '{');
            }
            ')' | ']' | '}' => {
                depth = depth.saturating_sub(1);
                if c == '}' {
                    braces = braces.saturating_sub(1);
                }
            }
            '+' | '-' | '*' | '/' | '%' | '^' | '<' | '>' | '=' | '!' if braces == 0 => {
                operators += 1;
            }
            _ => {}
        }
    }
    // `and`, `or`, `unless`, `atan2` are operators too, in any case; counted roughly, in
    // strings and comments too (over-counting only refuses sooner).
    let words = text
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| {
            ["and", "or", "unless", "atan2"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k))
        })
        .count();
    (deepest, operators + words)
}

/// The start of a long query, for messages.
fn short(text: &str) -> String {
    const SHOWN: usize = 200;
    match text.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_shapes_are_refused_before_the_parser() {
        let deep = format!("{}x{}", "(".repeat(5_000), ")".repeat(5_000));
        let long = format!("x{}", "+x".repeat(5_000));
        let wide = "x".repeat(MAX_QUERY_BYTES + 1);
        for (text, why) in [
            (deep.as_str(), "nested 5000 deep"),
            (long.as_str(), "5000 operators"),
            (wide.as_str(), "bytes, over"),
        ] {
            match parse(text) {
                Err(BackendError::Invalid(message)) => assert!(message.contains(why), "{message}"),
                other => panic!("expected invalid, got {other:?}"),
            }
        }
        // Comments hide nothing: a quote or a bracket in one does not skew the count, and
        // keyword operators count in any case.
        let commented = format!(
            "vector(0) #\"\n+ {}1{}\n#\"",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        let closing = "((((((((((# ))))))))))\n".repeat(300) + "1" + &")".repeat(3000);
        let words = format!("x{}", " OR x".repeat(1000));
        let atan = format!("1{}", " atan2 1".repeat(1000));
        for (text, why) in [
            (commented.as_str(), "nested 5000 deep"),
            (closing.as_str(), "nested 3000 deep"),
            (words.as_str(), "1000 operators"),
            (atan.as_str(), "1000 operators"),
        ] {
            match parse(text) {
                Err(BackendError::Invalid(message)) => assert!(message.contains(why), "{message}"),
                other => panic!("expected invalid, got {other:?}"),
            }
        }
        // A duration the parser cannot hold is a bad query, not a panic.
        for text in ["up offset 1e30", "up[1e20]", "max_over_time(up[5m:1e400])"] {
            assert!(
                matches!(parse(text), Err(BackendError::Invalid(_))),
                "{text}"
            );
        }
        // Operators inside strings and selectors are not counted; a fine query parses.
        let fine = format!("x{{a=\"{}\"}} + 1", "+".repeat(1000));
        assert!(parse(&fine).is_ok());
        assert!(matches!(parse("sum(x"), Err(BackendError::Invalid(_))));
    }
}
