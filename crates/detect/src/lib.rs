//! Detectors over text: credentials, personal data and injected instructions.
//!
//! Pure and deterministic: no IO, no clock. Shared by the audit redactor
//! (`toolgate-audit`), the policy's `secret` and `pii` predicates and its `results`
//! rules (`toolgate-policy`), and the scanner's attack signals (`toolgate-scan`).
//!
//! # Layout
//! - [`secret`]: credentials (cloud and SaaS API keys, bearer tokens, JWTs, private keys,
//!   connection strings with a password, high-entropy values next to secret-ish names).
//! - [`pii`]: email addresses, phone numbers, card numbers (Luhn and issuer prefix),
//!   IBANs (mod-97), US social security numbers, IPv4 and IPv6 addresses.
//! - [`injection`]: spans of text that address the model rather than the reader
//!   (`<IMPORTANT>` blocks, invisible Unicode, ANSI escapes, orders to call other tools
//!   or send data out); the scanner's patterns live here too.
//!
//! [`find`] runs the detectors a [`KindSet`] selects and returns non-overlapping
//! [`Span`]s in text order; [`redact`] cuts them out. A span says what was found, never
//! keeps the matched text: callers that record findings record kinds and counts.
//!
//! ```
//! use toolgate_detect::{find, redact, Class, KindSet};
//! let text = "mail bob@example.com, key sk_live_abcdefghijklmnop";
//! let spans = find(text, KindSet::of(&[Class::Secrets, Class::Email]));
//! assert_eq!(redact(text, &spans), "mail [redacted:email], key [redacted:secret]");
//! ```

use std::ops::Range;

pub mod injection;
pub mod pii;
pub mod secret;

pub use injection::{injection_spans, strip, Injection};

/// A regex compiled once, on first use, into `cell` (`None` if `pattern` does not compile,
/// which tests rule out): the one way the detectors and the scanner keep their patterns.
pub fn lazy_regex(
    cell: &'static std::sync::OnceLock<Option<regex::Regex>>,
    pattern: &str,
) -> Option<&'static regex::Regex> {
    cell.get_or_init(|| regex::Regex::new(pattern).ok())
        .as_ref()
}

/// Something found at a byte range of a text ([`Span`], [`Injection`]).
pub(crate) trait Ranged {
    /// Its range.
    fn range(&self) -> &Range<usize>;
    /// Its range, to widen.
    fn range_mut(&mut self) -> &mut Range<usize>;
}

impl Ranged for Span {
    fn range(&self) -> &Range<usize> {
        &self.range
    }
    fn range_mut(&mut self) -> &mut Range<usize> {
        &mut self.range
    }
}

impl Ranged for Injection {
    fn range(&self) -> &Range<usize> {
        &self.range
    }
    fn range_mut(&mut self) -> &mut Range<usize> {
        &mut self.range
    }
}

/// A family of findings, as a policy names it (`"secrets"`, `"email"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Credentials of any kind (see [`secret`]).
    Secrets,
    /// Email addresses.
    Email,
    /// Phone numbers (international `+…`, or North American with separators).
    Phone,
    /// Payment card numbers (Luhn check and a known issuer prefix).
    Card,
    /// International bank account numbers (mod-97 check).
    Iban,
    /// US social security numbers (`123-45-6789`).
    Ssn,
    /// IPv4 and IPv6 addresses.
    Ip,
}

impl Class {
    /// Every class, in the order policies list them.
    pub const ALL: [Class; 7] = [
        Class::Secrets,
        Class::Email,
        Class::Phone,
        Class::Card,
        Class::Iban,
        Class::Ssn,
        Class::Ip,
    ];

    /// The name in policy documents (`secrets`, `email`, `phone`, `card`, `iban`, `ssn`,
    /// `ip`).
    pub fn name(self) -> &'static str {
        match self {
            Class::Secrets => "secrets",
            Class::Email => "email",
            Class::Phone => "phone",
            Class::Card => "card",
            Class::Iban => "iban",
            Class::Ssn => "ssn",
            Class::Ip => "ip",
        }
    }

    /// The class a policy name means (`secret` is accepted for `secrets`).
    pub fn parse(name: &str) -> Option<Class> {
        match name {
            "secrets" | "secret" => Some(Class::Secrets),
            "email" => Some(Class::Email),
            "phone" => Some(Class::Phone),
            "card" => Some(Class::Card),
            "iban" => Some(Class::Iban),
            "ssn" => Some(Class::Ssn),
            "ip" => Some(Class::Ip),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`Class`]es to look for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct KindSet(u8);

impl KindSet {
    /// Nothing.
    pub const EMPTY: KindSet = KindSet(0);

    /// The given classes.
    pub fn of(classes: &[Class]) -> KindSet {
        KindSet(classes.iter().fold(0, |acc, c| acc | c.bit()))
    }

    /// Every class.
    pub fn all() -> KindSet {
        KindSet::of(&Class::ALL)
    }

    /// Personal data: every class but secrets.
    pub fn pii() -> KindSet {
        KindSet::of(&[
            Class::Email,
            Class::Phone,
            Class::Card,
            Class::Iban,
            Class::Ssn,
            Class::Ip,
        ])
    }

    /// True when `class` is in the set.
    pub fn contains(self, class: Class) -> bool {
        self.0 & class.bit() != 0
    }

    /// True when the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// This set with `class` added.
    pub fn with(self, class: Class) -> KindSet {
        KindSet(self.0 | class.bit())
    }

    /// Both sets together.
    pub fn union(self, other: KindSet) -> KindSet {
        KindSet(self.0 | other.0)
    }

    /// The classes in the set, in [`Class::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Class> {
        Class::ALL.into_iter().filter(move |c| self.contains(*c))
    }
}

/// What a span holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A credential, with a label saying which (`API key`, `JWT`, `private key`, …).
    Secret(&'static str),
    /// An email address.
    Email,
    /// A phone number.
    Phone,
    /// A card number.
    Card,
    /// An IBAN.
    Iban,
    /// A US social security number.
    Ssn,
    /// An IP address.
    Ip,
}

impl Kind {
    /// The class this kind belongs to.
    pub fn class(self) -> Class {
        match self {
            Kind::Secret(_) => Class::Secrets,
            Kind::Email => Class::Email,
            Kind::Phone => Class::Phone,
            Kind::Card => Class::Card,
            Kind::Iban => Class::Iban,
            Kind::Ssn => Class::Ssn,
            Kind::Ip => Class::Ip,
        }
    }

    /// The word in a redaction marker (`[redacted:secret]`, `[redacted:email]`).
    pub fn tag(self) -> &'static str {
        match self {
            Kind::Secret(_) => "secret",
            other => other.class().name(),
        }
    }

    /// A human label (`API key`, `card number`, `email address`).
    pub fn label(self) -> &'static str {
        match self {
            Kind::Secret(l) => l,
            Kind::Email => "email address",
            Kind::Phone => "phone number",
            Kind::Card => "card number",
            Kind::Iban => "IBAN",
            Kind::Ssn => "social security number",
            Kind::Ip => "IP address",
        }
    }
}

/// One finding: where (a byte range of the text) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Byte range; always on character boundaries.
    pub range: Range<usize>,
    /// What was found there.
    pub kind: Kind,
}

/// Every finding of the selected classes in `text`, in order. Overlapping finds are
/// merged into one span that keeps the kind of the one that starts first (the longer
/// one when two start together): `Bearer eyJ…` is one bearer token, not a JWT inside it.
pub fn find(text: &str, kinds: KindSet) -> Vec<Span> {
    let mut spans = vec![];
    if kinds.contains(Class::Secrets) {
        spans.extend(secret::spans(text));
    }
    if kinds.contains(Class::Card) {
        spans.extend(pii::card_spans(text));
    }
    if kinds.contains(Class::Email) {
        spans.extend(pii::email_spans(text));
    }
    if kinds.contains(Class::Iban) {
        spans.extend(pii::iban_spans(text));
    }
    if kinds.contains(Class::Ssn) {
        spans.extend(pii::ssn_spans(text));
    }
    if kinds.contains(Class::Phone) {
        spans.extend(pii::phone_spans(text));
    }
    if kinds.contains(Class::Ip) {
        spans.extend(pii::ip_spans(text));
    }
    merge(spans)
}

/// True when `text` holds anything of the selected classes (the first find's kind).
pub fn first(text: &str, kinds: KindSet) -> Option<Kind> {
    find(text, kinds).first().map(|s| s.kind)
}

/// Sorts spans and merges overlapping ones (the earlier, then longer, keeps its kind).
pub(crate) fn merge<T: Ranged>(mut spans: Vec<T>) -> Vec<T> {
    spans.retain(|s| s.range().end > s.range().start);
    spans.sort_by_key(|s| (s.range().start, std::cmp::Reverse(s.range().end)));
    let mut merged: Vec<T> = Vec::with_capacity(spans.len());
    for sp in spans {
        match merged.last_mut() {
            Some(last) if sp.range().start < last.range().end => {
                let end = last.range().end.max(sp.range().end);
                last.range_mut().end = end;
            }
            _ => merged.push(sp),
        }
    }
    merged
}

/// `text` with each span replaced by `[redacted:TAG]` ([`Kind::tag`]). The spans must be
/// in order and not overlap, as [`find`] returns them.
pub fn redact(text: &str, spans: &[Span]) -> String {
    replace(text, spans, |k| format!("[redacted:{}]", k.tag()))
}

/// `text` with each span replaced by what `marker` makes of its kind.
pub fn replace(text: &str, spans: &[Span], marker: impl Fn(Kind) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for sp in spans {
        if sp.range.start < from {
            continue;
        }
        out.push_str(text.get(from..sp.range.start).unwrap_or_default());
        out.push_str(&marker(sp.kind));
        from = sp.range.end;
    }
    out.push_str(text.get(from..).unwrap_or_default());
    out
}

/// True when the character before byte `at` (if any) is a letter or a digit.
pub(crate) fn alnum_before(text: &str, at: usize) -> bool {
    text.get(..at)
        .and_then(|s| s.chars().next_back())
        .is_some_and(char::is_alphanumeric)
}

/// True when the character at byte `at` (if any) is a letter or a digit.
pub(crate) fn alnum_at(text: &str, at: usize) -> bool {
    text.get(at..)
        .and_then(|s| s.chars().next())
        .is_some_and(char::is_alphanumeric)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_trip() {
        for c in Class::ALL {
            assert_eq!(Class::parse(c.name()), Some(c));
        }
        assert_eq!(Class::parse("passport"), None);
        let set = KindSet::of(&[Class::Email, Class::Ip]);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![Class::Email, Class::Ip]
        );
        assert!(!set.contains(Class::Secrets));
        assert!(KindSet::EMPTY.is_empty());
        assert_eq!(KindSet::pii().with(Class::Secrets), KindSet::all());
    }

    #[test]
    fn find_selects_and_merges() {
        let text = "card 4111 1111 1111 1111 mail a@b.io from 10.0.0.1 key AKIAABCDEFGHIJKLMNOP";
        let all = find(text, KindSet::all());
        let kinds: Vec<Kind> = all.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Card,
                Kind::Email,
                Kind::Ip,
                Kind::Secret("AWS access key")
            ]
        );
        let only = find(text, KindSet::of(&[Class::Ip]));
        assert_eq!(only.len(), 1);
        assert_eq!(&text[only[0].range.clone()], "10.0.0.1");
        assert_eq!(
            redact(text, &all),
            "card [redacted:card] mail [redacted:email] from [redacted:ip] key [redacted:secret]"
        );
        assert!(find(text, KindSet::EMPTY).is_empty());
    }

    #[test]
    fn overlapping_finds_are_one_span() {
        let s = "Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl tail";
        let spans = find(s, KindSet::all());
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].kind, Kind::Secret("bearer token"));
        assert_eq!(redact(s, &spans), "[redacted:secret] tail");
    }
}
