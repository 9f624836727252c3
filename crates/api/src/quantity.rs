//! Kubernetes resource quantities (`64M`, `1Gi`, `500m`, `1e3`) as exact numbers, so memory and
//! CPU amounts can be compared, added and rounded without floating point.

use std::fmt;

/// A parsed quantity, held exactly in thousandths of a unit (what `500m` counts in).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount {
    milli: i128,
}

/// Why a quantity string could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}"
)]
pub struct ParseError(pub String);

impl Amount {
    pub const ZERO: Amount = Amount { milli: 0 };

    /// Parses Kubernetes quantity syntax: a decimal number with a binary (Ki..Ei), decimal
    /// (n, u, m, k, M, G, T, P, E) or exponent (e3, E-2) suffix.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError(s.to_string());
        let t = s.trim();
        let split = t
            .char_indices()
            .find(|(i, c)| {
                !(c.is_ascii_digit() || *c == '.' || ((*c == '+' || *c == '-') && *i == 0))
            })
            .map_or(t.len(), |(i, _)| i);
        let (number, suffix) = t.split_at(split);
        let (negative, digits) = match number.as_bytes().first() {
            Some(b'-') => (true, &number[1..]),
            Some(b'+') => (false, &number[1..]),
            _ => (false, number),
        };
        if digits.is_empty() || digits == "." || digits.matches('.').count() > 1 {
            return Err(err());
        }
        let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
        // Value as an integer mantissa with a decimal exponent: mantissa * 10^exp10.
        let mantissa: i128 = format!("{int_part}{frac_part}")
            .parse::<i128>()
            .map_err(|_| err())?;
        let mut exp10: i32 = -(frac_part.len() as i32);
        let mut factor: i128 = 1;
        match suffix {
            "" => {}
            "Ki" => factor = 1 << 10,
            "Mi" => factor = 1 << 20,
            "Gi" => factor = 1 << 30,
            "Ti" => factor = 1 << 40,
            "Pi" => factor = 1 << 50,
            "Ei" => factor = 1 << 60,
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            other => {
                let rest = other.strip_prefix(['e', 'E']).ok_or_else(err)?;
                exp10 += rest.parse::<i32>().map_err(|_| err())?;
            }
        }
        // Count in milli-units: shift the decimal exponent by 3, rounding up a remainder as
        // Kubernetes does (0.1m becomes 1m).
        let shift = exp10 + 3;
        let scaled = mantissa.checked_mul(factor).ok_or_else(err)?;
        let milli = if shift >= 0 {
            scaled
                .checked_mul(10i128.checked_pow(shift as u32).ok_or_else(err)?)
                .ok_or_else(err)?
        } else {
            let div = 10i128.checked_pow((-shift) as u32).ok_or_else(err)?;
            (scaled + div - 1) / div
        };
        Ok(Amount {
            milli: if negative { -milli } else { milli },
        })
    }

    /// The amount in whole units, rounded up (CPU cores from `1500m` is 2; bytes from `1.5k`).
    pub fn ceil_units(self) -> i128 {
        if self.milli >= 0 {
            (self.milli + 999) / 1000
        } else {
            self.milli / 1000
        }
    }

    /// Whether the amount is a whole number of units.
    pub fn is_whole(self) -> bool {
        self.milli % 1000 == 0
    }

    pub fn milli(self) -> i128 {
        self.milli
    }

    pub fn from_units(units: i128) -> Self {
        Amount {
            milli: units.saturating_mul(1000),
        }
    }

    pub fn is_zero(self) -> bool {
        self.milli == 0
    }

    pub fn is_negative(self) -> bool {
        self.milli < 0
    }

    /// Whole units as bytes, for memory amounts (never negative).
    pub fn bytes(self) -> u64 {
        u64::try_from(self.ceil_units().max(0)).unwrap_or(u64::MAX)
    }

    /// The quantity string for a number of bytes: the largest binary suffix that divides it.
    pub fn bytes_to_string(bytes: u64) -> String {
        const SUFFIXES: [(&str, u32); 6] = [
            ("Ei", 60),
            ("Pi", 50),
            ("Ti", 40),
            ("Gi", 30),
            ("Mi", 20),
            ("Ki", 10),
        ];
        for (suffix, shift) in SUFFIXES {
            if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
                return format!("{}{suffix}", bytes >> shift);
            }
        }
        bytes.to_string()
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_whole() {
            write!(f, "{}", self.milli / 1000)
        } else {
            write!(f, "{}m", self.milli)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(s: &str) -> i128 {
        Amount::parse(s).map(Amount::ceil_units).unwrap_or(-1)
    }

    #[test]
    fn parses_the_suffix_families() {
        assert_eq!(units("64M"), 64_000_000);
        assert_eq!(units("1Gi"), 1 << 30);
        assert_eq!(units("1.5Gi"), 3 << 29);
        assert_eq!(units("128974848"), 128_974_848);
        assert_eq!(units("129e6"), 129_000_000);
        assert_eq!(Amount::parse("500m").map(Amount::milli), Ok(500));
        assert_eq!(units("1500m"), 2);
        assert_eq!(Amount::parse("0.1m").map(Amount::milli), Ok(1));
        assert_eq!(units("+2"), 2);
        assert!(Amount::parse("-1Gi").is_ok_and(Amount::is_negative));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "Gi", "1.2.3", "1Gb", "x", "1e", ".", "1 Gi"] {
            assert!(Amount::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_bytes_with_binary_suffixes() {
        assert_eq!(Amount::bytes_to_string(1 << 30), "1Gi");
        assert_eq!(Amount::bytes_to_string(64 << 20), "64Mi");
        assert_eq!(Amount::bytes_to_string(64_000_000), "62500Ki");
        assert_eq!(Amount::bytes_to_string(1000), "1000");
    }
}
