//! Kubernetes resource quantities (`500m`, `1Gi`, `2`, `1e3`) as integers in thousandths of the
//! unit, so CPU is in millicores and memory in thousandths of a byte (divide by 1000 for bytes).

/// Parses a quantity into thousandths of its unit, rounding up (as Kubernetes does for
/// `MilliValue`). Returns `None` for text that is not a quantity.
pub fn parse_milli(q: &str) -> Option<i128> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    // Decimal exponent notation: 1e3, 1E-3.
    let (mul_num, mul_den): (i128, i128) = match suffix {
        "" => (1, 1),
        "n" => (1, 1_000_000_000),
        "u" => (1, 1_000_000),
        "m" => (1, 1_000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().ok()?;
            if exp.abs() > 18 {
                return None;
            }
            if exp >= 0 {
                (10i128.pow(exp as u32), 1)
            } else {
                (1, 10i128.pow((-exp) as u32))
            }
        }
        _ => return None,
    };
    let (neg, num) = match num.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let frac = &frac[..frac.len().min(18)];
    let int_v: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac_v: i128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let frac_den = 10i128.pow(frac.len() as u32);
    // value = (int + frac/frac_den) * mul_num / mul_den, in thousandths, rounded up.
    let numer = (int_v.checked_mul(frac_den)?.checked_add(frac_v)?)
        .checked_mul(mul_num)?
        .checked_mul(1000)?;
    let denom = frac_den.checked_mul(mul_den)?;
    let v = numer / denom + i128::from(numer % denom != 0);
    Some(if neg { -v } else { v })
}

/// Parses a quantity into whole units, rounding up (bytes for memory, cores for CPU).
pub fn parse_units(q: &str) -> Option<i128> {
    parse_milli(q).map(|m| m.div_euclid(1000) + i128::from(m.rem_euclid(1000) != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory() {
        assert_eq!(parse_milli("500m"), Some(500));
        assert_eq!(parse_milli("2"), Some(2000));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_milli("100n"), Some(1));
        assert_eq!(parse_units("1Gi"), Some(1 << 30));
        assert_eq!(parse_units("128Mi"), Some(128 << 20));
        assert_eq!(parse_units("1k"), Some(1000));
        assert_eq!(parse_units("1e3"), Some(1000));
        assert_eq!(parse_units("1.5Ki"), Some(1536));
        assert_eq!(parse_units("250m"), Some(1));
        assert_eq!(parse_milli("-1"), Some(-1000));
    }

    #[test]
    fn rejects_garbage() {
        for q in ["", "abc", "1x", "1.2.3", "Mi", "."] {
            assert_eq!(parse_milli(q), None, "{q}");
        }
    }
}
