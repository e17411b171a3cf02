//! Kubernetes resource quantities (`250m`, `1Gi`, `3e2`) as numbers.

/// A CPU quantity in millicores: `2`, `0.5`, `250m`, `1500000n`, `300u`.
pub fn cpu_millis(quantity: &str) -> u64 {
    let q = quantity.trim();
    let (number, scale) = match q.char_indices().last() {
        Some((i, 'm')) => (&q[..i], 1.0),
        Some((i, 'u')) => (&q[..i], 1e-3),
        Some((i, 'n')) => (&q[..i], 1e-6),
        _ => (q, 1000.0),
    };
    number
        .parse::<f64>()
        .map_or(0, |n| (n * scale).ceil().max(0.0) as u64)
}

/// Any quantity as a number: `1500m` is 1.5, `2k` 2000, `1Ki` 1024, `3e2` 300.
pub fn quantity(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let suffixes: [(&str, f64); 16] = [
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        // An exponent ("1E3") is not the exa suffix: only a bare trailing E is.
        ("E", 1e18),
        ("", 1.0),
    ];
    suffixes.iter().find_map(|(suffix, factor)| {
        let number = q.strip_suffix(suffix)?;
        let n: f64 = number.parse().ok()?;
        n.is_finite().then_some(n * factor)
    })
}

/// A memory quantity in bytes: `128Mi`, `1Gi`, `500M`, `1e9`, `1024`.
pub fn bytes(quantity: &str) -> u64 {
    let q = quantity.trim();
    let suffixes: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = q.strip_suffix(suffix) {
            return number.parse::<f64>().map_or(0, |n| (n * factor) as u64);
        }
    }
    q.parse::<f64>().map_or(0, |n| n.max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_quantity() {
        assert_eq!(quantity("1500m"), Some(1.5));
        assert_eq!(quantity("2k"), Some(2000.0));
        assert_eq!(quantity("1Ki"), Some(1024.0));
        assert_eq!(quantity("42"), Some(42.0));
        assert_eq!(quantity("3e2"), Some(300.0));
        assert_eq!(quantity("1E"), Some(1e18));
        assert_eq!(quantity("lots"), None);
    }

    #[test]
    fn quantities() {
        assert_eq!(cpu_millis("2"), 2000);
        assert_eq!(cpu_millis("0.5"), 500);
        assert_eq!(cpu_millis("250m"), 250);
        assert_eq!(cpu_millis("1500000n"), 2);
        assert_eq!(cpu_millis("300u"), 1);
        assert_eq!(bytes("128Mi"), 128 << 20);
        assert_eq!(bytes("1Gi"), 1 << 30);
        assert_eq!(bytes("500M"), 500_000_000);
        assert_eq!(bytes("1e9"), 1_000_000_000);
        assert_eq!(bytes("1024"), 1024);
    }
}
