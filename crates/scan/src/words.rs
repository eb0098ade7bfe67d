//! Splitting names into lowercase words: `createCheckoutSession`, `create-checkout`,
//! `stripe.create_checkout` all give `create`, `checkout`, ….

/// The words of a name.
pub fn split_name(name: &str) -> Vec<String> {
    let mut words = vec![];
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// The lowercase words of free text.
pub fn text_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .flat_map(split_name)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn styles() {
        assert_eq!(
            split_name("createCheckoutSession"),
            ["create", "checkout", "session"]
        );
        assert_eq!(split_name("create-checkout"), ["create", "checkout"]);
        assert_eq!(
            split_name("stripe.create_refund"),
            ["stripe", "create", "refund"]
        );
        assert_eq!(
            split_name("browser_navigate_back"),
            ["browser", "navigate", "back"]
        );
        assert_eq!(split_name("HTTPGet"), ["httpget"]);
    }
}
