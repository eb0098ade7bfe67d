//! Personal data in text: email addresses, phone numbers, card numbers, IBANs, US social
//! security numbers, IP addresses.
//!
//! Each detector errs towards precision: a number is a card only with a Luhn check and
//! an issuer prefix, an IBAN only with its country's length and the mod-97 check, a
//! phone number only in international form (`+…`) or North American form with
//! separators. Order numbers, timestamps, dates and version strings are not matched.

use std::net::Ipv6Addr;
use std::sync::OnceLock;

use regex::Regex;

use crate::{alnum_at, alnum_before, Kind, Span};

use crate::lazy_regex as re;

fn matches(
    r: Option<&'static Regex>,
    text: &str,
    kind: Kind,
    keep: impl Fn(&str, usize, usize) -> bool,
) -> Vec<Span> {
    let Some(r) = r else { return vec![] };
    r.find_iter(text)
        .filter(|m| keep(m.as_str(), m.start(), m.end()))
        .map(|m| Span {
            range: m.range(),
            kind,
        })
        .collect()
}

/// The character before byte `at`, if any.
fn char_before(text: &str, at: usize) -> Option<char> {
    text.get(..at).and_then(|s| s.chars().next_back())
}

/// The character at byte `at`, if any.
fn char_at(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|s| s.chars().next())
}

/// True when a digit group continues across `at` (`12-` before, or `.5` after): the match
/// is part of a longer number, a date or a version.
fn joined_digits(text: &str, start: usize, end: usize) -> bool {
    let before = char_before(text, start);
    let before2 = before.and_then(|c| char_before(text, start.saturating_sub(c.len_utf8())));
    let after = char_at(text, end);
    let after2 = after.and_then(|c| char_at(text, end + c.len_utf8()));
    let sep = |c: Option<char>| matches!(c, Some('.' | '-' | '/' | ':'));
    let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
    digit(before)
        || digit(after)
        || (sep(before) && digit(before2))
        || (sep(after) && digit(after2))
}

// ---- email ----

fn email_re() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"[A-Za-z0-9_%+-][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b",
    )
}

/// File extensions that follow `@` in asset names (`logo@2x.png`), not top-level domains.
const NOT_TLDS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "css", "js", "ts", "json", "pdf",
];

/// Email addresses. Not `logo@2x.png`, not `git@github.com:org/repo` (an SSH remote).
pub fn email_spans(text: &str) -> Vec<Span> {
    matches(email_re(), text, Kind::Email, |m, start, end| {
        let tld = m.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
        !NOT_TLDS.contains(&tld.as_str())
            && char_at(text, end) != Some(':')
            && !matches!(char_before(text, start), Some('.' | '@'))
    })
}

// ---- phone ----

fn phone_intl() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(&R, r"\+[1-9]\d{0,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}")
}

fn phone_nanp() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"(?:\b1[ .-])?(?:\([2-9]\d{2}\) ?|\b[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}\b",
    )
}

/// Phone numbers: `+` and 8 to 15 digits (separators allowed), or North American
/// `(415) 555-2671`, `415-555-2671`, `415.555.2671`. A bare run of digits is not one.
pub fn phone_spans(text: &str) -> Vec<Span> {
    let digits = |m: &str| m.bytes().filter(u8::is_ascii_digit).count();
    let mut out = matches(phone_intl(), text, Kind::Phone, |m, start, end| {
        (8..=15).contains(&digits(m))
            && !alnum_before(text, start)
            && !joined_digits(text, start, end)
    });
    out.extend(matches(phone_nanp(), text, Kind::Phone, |_, start, end| {
        !joined_digits(text, start, end) && char_before(text, start) != Some('+')
    }));
    crate::merge(out)
}

// ---- card ----

/// True when `digits` (digits only) is 13 to 19 long, starts like a card issuer's
/// numbers and passes the Luhn check.
pub fn is_card_number(digits: &str) -> bool {
    let n = digits.len();
    if !(13..=19).contains(&n) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    issuer_prefix(digits, n) && luhn(digits)
}

fn issuer_prefix(d: &str, n: usize) -> bool {
    let two: u32 = d.get(..2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let four: u32 = d.get(..4).and_then(|s| s.parse().ok()).unwrap_or(0);
    match two / 10 {
        4 => matches!(n, 13 | 16 | 19),
        5 => ((51..=55).contains(&two) && n == 16) || ((two == 50 || two >= 56) && n >= 12),
        2 => (2221..=2720).contains(&four) && n == 16,
        3 => match two {
            34 | 37 => n == 15,
            35 => n >= 16,
            30 | 36 | 38 | 39 => n >= 14,
            _ => false,
        },
        6 => n >= 16,
        _ => false,
    }
}

/// The Luhn checksum over ASCII digits.
pub fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b.wrapping_sub(b'0'));
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Card numbers: runs of 13 to 19 digits (one space or dash allowed between digits) that
/// stand alone (no letter or digit on either side), start with an issuer's prefix and
/// pass the Luhn check. From the first digit to the last.
pub fn card_spans(text: &str) -> Vec<Span> {
    let mut found = vec![];
    let mut run = String::new();
    let mut start = 0;
    let mut end = 0;
    let mut last_sep = false;
    let mut flush = |run: &mut String, start: usize, end: usize| {
        if is_card_number(run) && !alnum_before(text, start) && !alnum_at(text, end) {
            found.push(Span {
                range: start..end,
                kind: Kind::Card,
            });
        }
        run.clear();
    };
    for (i, c) in text.char_indices() {
        if c.is_ascii_digit() {
            if run.is_empty() {
                start = i;
            }
            run.push(c);
            end = i + 1;
            last_sep = false;
        } else if (c == ' ' || c == '-') && !run.is_empty() && !last_sep {
            last_sep = true;
        } else {
            flush(&mut run, start, end);
            last_sep = false;
        }
    }
    flush(&mut run, start, end);
    found
}

// ---- IBAN ----

fn iban_re() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
    )
}

/// IBAN lengths by country (the SWIFT registry's, for the countries that use IBANs).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VG", 24),
    ("XK", 20),
];

/// True when `s` (spaces allowed) is an IBAN: a known country, its length, mod 97 = 1.
pub fn is_iban(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| *c != ' ').collect();
    let Some(country) = compact.get(..2) else {
        return false;
    };
    let Some((_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| *c == country) else {
        return false;
    };
    if compact.len() != *len || !compact.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (head, tail) = compact.split_at(4.min(compact.len()));
    let mut rem: u32 = 0;
    for b in tail.bytes().chain(head.bytes()) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// IBANs, compact or in groups of four.
pub fn iban_spans(text: &str) -> Vec<Span> {
    matches(iban_re(), text, Kind::Iban, |m, _, _| is_iban(m))
}

// ---- SSN ----

fn ssn_re() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(&R, r"\b(\d{3})-(\d{2})-(\d{4})\b")
}

/// US social security numbers written `123-45-6789`, with the numbers the SSA never
/// issues left out (area 000, 666 or 9xx; group 00; serial 0000).
pub fn ssn_spans(text: &str) -> Vec<Span> {
    let Some(r) = ssn_re() else { return vec![] };
    r.captures_iter(text)
        .filter_map(|c| {
            let m = c.get(0)?;
            let area = c.get(1)?.as_str();
            let group = c.get(2)?.as_str();
            let serial = c.get(3)?.as_str();
            let issued = area != "000"
                && area != "666"
                && !area.starts_with('9')
                && group != "00"
                && serial != "0000";
            (issued && !joined_digits(text, m.start(), m.end())).then(|| Span {
                range: m.range(),
                kind: Kind::Ssn,
            })
        })
        .collect()
}

// ---- IP ----

fn ipv4_re() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b(?:/(?:3[0-2]|[12]?\d)\b)?",
    )
}

fn ipv6_re() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    re(
        &R,
        r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:\.\d{1,3}){0,3}",
    )
}

/// IPv4 (dotted quad, optional `/prefix`) and IPv6 addresses. Not a version string
/// (`v1.2.3.4`, `1.2.3.4.5`), not a time (`10:30:00`), not a MAC address.
pub fn ip_spans(text: &str) -> Vec<Span> {
    let mut out = matches(ipv4_re(), text, Kind::Ip, |_, start, end| {
        !matches!(char_before(text, start), Some('.' | ':' | 'v' | 'V'))
            && !joined_digits(text, start, end)
    });
    out.extend(matches(ipv6_re(), text, Kind::Ip, |m, start, end| {
        m.bytes().any(|b| b.is_ascii_hexdigit())
            && !alnum_before(text, start)
            && !alnum_at(text, end)
            && char_before(text, start) != Some(':')
            && m.parse::<Ipv6Addr>().is_ok()
    }));
    crate::merge(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn texts(spans: &[Span], text: &str) -> Vec<String> {
        spans
            .iter()
            .map(|s| text[s.range.clone()].to_string())
            .collect()
    }

    #[test]
    fn emails() {
        let t = "write to jane.doe+x@mail.example.co.uk or BOB@EXAMPLE.COM.";
        assert_eq!(
            texts(&email_spans(t), t),
            vec!["jane.doe+x@mail.example.co.uk", "BOB@EXAMPLE.COM"]
        );
        for not in [
            "logo@2x.png",
            "git@github.com:toolgate/toolgate.git",
            "@mention only",
            "user@localhost",
            "price 3@4.50",
        ] {
            assert!(email_spans(not).is_empty(), "{not}");
        }
    }

    #[test]
    fn phones() {
        for (t, want) in [
            ("call +1 415 555 2671 now", "+1 415 555 2671"),
            ("tel:+442071838750", "+442071838750"),
            ("(415) 555-2671", "(415) 555-2671"),
            ("office 415.555.2671", "415.555.2671"),
            ("1-800-555-0199", "1-800-555-0199"),
            ("+49 (30) 1234-5678", "+49 (30) 1234-5678"),
        ] {
            assert_eq!(texts(&phone_spans(t), t), vec![want], "{t}");
        }
        for not in [
            "order 1234567890",
            "at 2024-01-15 10:30:00",
            "epoch 1700000000000",
            "version 10.1.4567",
            "ip 192.168.100.200",
            "id 123-456-7890-1234",
            "+12",
            "uuid 123e4567-e89b-12d3-a456-426614174000",
        ] {
            assert!(phone_spans(not).is_empty(), "{not}: {:?}", phone_spans(not));
        }
    }

    #[test]
    fn cards() {
        for t in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "2223003122003222",
        ] {
            assert_eq!(texts(&card_spans(t), t), vec![t], "{t}");
        }
        for not in [
            "4111 1111 1111 1112",                          // Luhn fails
            "order 1234567890123",                          // no issuer, no Luhn
            "at 1700000000000 ms",                          // a millisecond timestamp
            "sha 4f1a8b2c3d4e5f60718293a4b5c6d7e8f9011121", // digits inside a hash
            "x4111111111111111",                            // glued to a word
            "0000000000000000",                             // Luhn passes, no issuer
            "4111  1111 1111 1111",                         // two separators in a row split the run
        ] {
            assert!(card_spans(not).is_empty(), "{not}");
        }
        assert!(is_card_number("4242424242424242"));
        assert!(!is_card_number("42424242424242424242"));
        assert!(luhn("79927398713"));
    }

    #[test]
    fn ibans() {
        for t in [
            "GB82 WEST 1234 5698 7654 32",
            "GB82WEST12345698765432",
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "NL91ABNA0417164300",
            "FR1420041010050500013M02606",
        ] {
            assert_eq!(texts(&iban_spans(t), t), vec![t], "{t}");
        }
        for not in [
            "GB82WEST12345698765433", // checksum
            "ZZ82WEST12345698765432", // no such country
            "DE8937040044053201300",  // length
            "SKU AB12CDEF34567890",   // not a country's length and check
        ] {
            assert!(iban_spans(not).is_empty(), "{not}");
        }
    }

    #[test]
    fn ssns() {
        let t = "ssn 078-05-1120.";
        assert_eq!(texts(&ssn_spans(t), t), vec!["078-05-1120"]);
        for not in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "2024-01-15",
            "1-123-45-6789",
            "123456789",
        ] {
            assert!(ssn_spans(not).is_empty(), "{not}");
        }
    }

    #[test]
    fn ips() {
        let t = "from 10.0.0.1 and 192.168.1.0/24, v6 2001:db8::8a2e:370:7334 or ::1 or ::ffff:192.0.2.1";
        assert_eq!(
            texts(&ip_spans(t), t),
            vec![
                "10.0.0.1",
                "192.168.1.0/24",
                "2001:db8::8a2e:370:7334",
                "::1",
                "::ffff:192.0.2.1"
            ]
        );
        for not in [
            "version 1.2.3",
            "v1.2.3.4",
            "release 1.2.3.4.5",
            "300.1.1.1",
            "at 10:30:00",
            "mac 00:1a:2b:3c:4d:5e",
            "std::vector",
            "Foo::bar::baz",
            "uuid 123e4567-e89b-12d3-a456-426614174000",
        ] {
            assert!(ip_spans(not).is_empty(), "{not}: {:?}", ip_spans(not));
        }
    }
}
