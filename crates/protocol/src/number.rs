//! Exact JSON numbers. serde_json keeps every number's text as written (the workspace
//! enables its `arbitrary_precision` feature), and this module reads that text as an exact
//! decimal: integers of any size and decimals are compared as written, never through an
//! `f64` that would round `1234567890123456789` to `1234567890123456800` or
//! `100.00000000000001` to `100`.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde_json::Number;

/// The most digits an exponent may have (after leading zeros) for the number to be
/// compared. Larger exponents (beyond 10^18) are refused, not rounded.
const MAX_EXPONENT_DIGITS: usize = 18;

/// An exact decimal: `±0.d₁d₂d₃… × 10^exponent`, normalized so that equal values are equal
/// structures (`1e3`, `1000` and `1000.00` are one value; `-0` is `0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    /// Significant digits (ASCII), no leading or trailing zeros; empty for zero.
    digits: Vec<u8>,
    /// Where the decimal point sits relative to the first digit.
    exponent: i64,
}

impl Decimal {
    /// Reads JSON number text (`-?int(.frac)?([eE][+-]?exp)?`). `None` when the text is not
    /// a JSON number or its exponent has more than 18 digits.
    pub fn parse(text: &str) -> Option<Decimal> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (mantissa, exp_text) = match rest.find(['e', 'E']) {
            Some(i) => (rest.get(..i)?, Some(rest.get(i + 1..)?)),
            None => (rest, None),
        };
        let written_exp: i64 = match exp_text {
            None => 0,
            Some(e) => {
                let (neg, digits) = match e.as_bytes().first() {
                    Some(b'-') => (true, e.get(1..)?),
                    Some(b'+') => (false, e.get(1..)?),
                    _ => (false, e),
                };
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let digits = digits.trim_start_matches('0');
                if digits.len() > MAX_EXPONENT_DIGITS {
                    return None;
                }
                let v: i64 = if digits.is_empty() {
                    0
                } else {
                    digits.parse().ok()?
                };
                if neg {
                    -v
                } else {
                    v
                }
            }
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        if int_part.is_empty()
            || !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
            || (mantissa.contains('.') && frac_part.is_empty())
        {
            return None;
        }
        let all = int_part.bytes().chain(frac_part.bytes());
        let leading = all.clone().take_while(|&b| b == b'0').count();
        let mut digits: Vec<u8> = all.skip(leading).collect();
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        if digits.is_empty() {
            return Some(Decimal {
                negative: false,
                digits,
                exponent: 0,
            });
        }
        let int_len = i64::try_from(int_part.len()).ok()?;
        let leading = i64::try_from(leading).ok()?;
        let exponent = written_exp.checked_add(int_len)?.checked_sub(leading)?;
        Some(Decimal {
            negative,
            digits,
            exponent,
        })
    }

    /// The exact value of a JSON number; `None` for an exponent beyond 10^18.
    pub fn from_number(n: &Number) -> Option<Decimal> {
        Decimal::parse(&n.to_string())
    }

    /// True for zero (whatever its sign as written).
    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// True below zero.
    pub fn is_negative(&self) -> bool {
        self.negative && !self.is_zero()
    }

    /// The smallest whole number at least this value, when that is in `0..=max`.
    pub fn ceil_u64(&self, max: u64) -> Option<u64> {
        if self.is_zero() {
            return Some(0);
        }
        if self.negative {
            // Above -1: the ceiling is 0; -1 and below are out of range.
            return (self.exponent <= 0).then_some(0);
        }
        if self.exponent > 20 {
            return None;
        }
        let int_len = usize::try_from(self.exponent.max(0)).ok()?;
        let mut whole: u64 = 0;
        for i in 0..int_len {
            let d = self.digits.get(i).map_or(0, |b| u64::from(b - b'0'));
            whole = whole.checked_mul(10)?.checked_add(d)?;
        }
        if self.digits.len() > int_len {
            whole = whole.checked_add(1)?;
        }
        (whole <= max).then_some(whole)
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            // 0.d × 10^e with a non-zero first digit: a larger exponent is a larger
            // magnitude; equal exponents compare digit by digit (a prefix is smaller).
            (false, false) => self
                .exponent
                .cmp(&other.exponent)
                .then_with(|| self.digits.cmp(&other.digits)),
        }
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.is_negative(), other.is_negative()) {
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares two JSON numbers exactly; `None` when either has an exponent beyond 10^18.
pub fn compare(a: &Number, b: &Number) -> Option<Ordering> {
    Some(Decimal::from_number(a)?.cmp(&Decimal::from_number(b)?))
}

/// Appends a number's canonical form to `out`.
///
/// Ordinary numbers keep the form toolgate always hashed, so existing pins and argument
/// hashes do not change: integers within `i64`/`u64` as digits, and decimals whose
/// shortest `f64` form has the same exact value in that form (`1.50` is `1.5`, `1e3` is
/// `1000.0`). Every other number is written as given (`12345678901234567890123`,
/// `100.000000000000001`, `1e-400`), so two numbers of different values never share a
/// form. (An ordinary form written as given is ordinary, so the two kinds cannot meet.)
pub fn write_canonical_number(n: &Number, out: &mut String) {
    let text = n.to_string();
    let is_integer = !text.contains(['.', 'e', 'E']);
    if is_integer {
        // Before exact numbers, `-0` was read as the float -0.0.
        out.push_str(if text == "-0" { "-0.0" } else { &text });
        return;
    }
    if let Some(short) = n.as_f64().and_then(Number::from_f64) {
        let short = short.to_string();
        if let (Some(a), Some(b)) = (Decimal::parse(&short), Decimal::parse(&text)) {
            if a == b {
                out.push_str(&short);
                return;
            }
        }
    }
    let _ = write!(out, "{text}");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    fn num(s: &str) -> Number {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn equal_values_written_differently_are_equal() {
        for (a, b) in [
            ("1e3", "1000"),
            ("1.0", "1"),
            ("1000.00", "1E+3"),
            ("-0", "0"),
            ("-0.0e5", "0"),
            ("0.00120", "1.2e-3"),
            ("12.5e-1", "1.25"),
        ] {
            assert_eq!(d(a), d(b), "{a} == {b}");
        }
    }

    #[test]
    fn order_is_exact() {
        let ascending = [
            "-1e400",
            "-12345678901234567890124",
            "-12345678901234567890123",
            "-100.00000000000001",
            "-100",
            "-1",
            "-0.5",
            "-1e-400",
            "0",
            "1e-400",
            "0.1",
            "0.12",
            "0.123",
            "0.13",
            "1",
            "100",
            "100.00000000000001",
            "101",
            "1234567890123456789",
            "1234567890123456800",
            "1e19",
            "1e999999999999999999",
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(d(a).cmp(&d(b)), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn huge_exponents_are_refused_not_rounded() {
        assert!(Decimal::parse("1e1000000000000000000").is_none());
        assert!(Decimal::parse("1e-000000000000000000000001").is_some());
        assert!(Decimal::parse("nope").is_none());
        assert!(Decimal::parse("1.").is_none());
    }

    #[test]
    fn ceil() {
        assert_eq!(d("100.00000000000001").ceil_u64(u64::MAX), Some(101));
        assert_eq!(d("100").ceil_u64(u64::MAX), Some(100));
        assert_eq!(d("1e2").ceil_u64(u64::MAX), Some(100));
        assert_eq!(d("0.001").ceil_u64(u64::MAX), Some(1));
        assert_eq!(d("-0.5").ceil_u64(u64::MAX), Some(0));
        assert_eq!(d("-1").ceil_u64(u64::MAX), None);
        assert_eq!(d("9e15").ceil_u64(9_000_000_000_000_000), Some(9e15 as u64));
        assert_eq!(
            d("9000000000000000.1").ceil_u64(9_000_000_000_000_000),
            None
        );
        assert_eq!(d("1e30").ceil_u64(u64::MAX), None);
    }

    #[test]
    fn canonical_forms_of_ordinary_numbers_are_unchanged() {
        // What canonical JSON wrote for these before numbers were kept exactly.
        for (text, before) in [
            ("0", "0"),
            ("-0", "-0.0"),
            ("-0.0", "-0.0"),
            ("42", "42"),
            ("-7", "-7"),
            ("123456789012345678", "123456789012345678"),
            ("1e3", "1000.0"),
            ("1E+3", "1000.0"),
            ("1.0", "1.0"),
            ("1.50", "1.5"),
            ("0.1", "0.1"),
            ("1e22", "1e+22"),
            ("1.5e-7", "1.5e-7"),
            ("0.30000000000000004", "0.30000000000000004"),
            ("5e-324", "5e-324"),
        ] {
            let mut out = String::new();
            write_canonical_number(&num(text), &mut out);
            assert_eq!(out, before, "{text}");
        }
    }

    #[test]
    fn canonical_forms_of_other_numbers_keep_their_value() {
        for (text, now) in [
            ("12345678901234567890123", "12345678901234567890123"),
            ("18446744073709551616", "18446744073709551616"),
            ("100.000000000000001", "100.000000000000001"),
            ("1e-400", "1e-400"),
            ("1e400", "1e+400"),
        ] {
            let mut out = String::new();
            write_canonical_number(&num(text), &mut out);
            assert_eq!(out, now, "{text}");
        }
    }
}
