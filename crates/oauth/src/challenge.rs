//! The `WWW-Authenticate: Bearer …` challenge of a protected server's `401` (RFC 6750,
//! RFC 9728 §5.1): where its protected resource metadata is, and the scope it asks for.

/// What a `Bearer` challenge says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    /// `resource_metadata`: the URL of the protected resource metadata.
    pub resource_metadata: Option<String>,
    /// `scope`: the scopes the server asks for, space-separated.
    pub scope: Option<String>,
    /// `error` (`invalid_token`, `insufficient_scope`, ...).
    pub error: Option<String>,
}

/// Reads a `WWW-Authenticate` header value; `None` unless it has a `Bearer` challenge.
pub fn parse(header: &str) -> Option<Challenge> {
    let start = find_scheme(header, "bearer")?;
    let mut rest = header[start + "bearer".len()..].trim_start();
    let mut c = Challenge::default();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        if name.contains(' ') {
            // The next challenge (`Basic realm=…`) starts here.
            break;
        }
        rest = rest[eq + 1..].trim_start();
        let (value, after) = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut end = None;
            let mut chars = quoted.char_indices();
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            value.push(next);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => value.push(ch),
                }
            }
            let end = end?;
            (value, &quoted[end..])
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            (rest[..end].trim().to_string(), &rest[end..])
        };
        match name.as_str() {
            "resource_metadata" => c.resource_metadata = Some(value),
            "scope" => c.scope = Some(value),
            "error" => c.error = Some(value),
            _ => {}
        }
        rest = after.trim_start().trim_start_matches(',').trim_start();
    }
    Some(c)
}

fn find_scheme(header: &str, scheme: &str) -> Option<usize> {
    let lower = header.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(scheme) {
        let at = from + i;
        let before_ok = at == 0 || matches!(lower.as_bytes()[at - 1], b' ' | b',');
        let after = lower.as_bytes().get(at + scheme.len());
        if before_ok && matches!(after, None | Some(b' ')) {
            return Some(at);
        }
        from = at + scheme.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_names_the_metadata_and_the_scope() {
        let c = parse(r#"Bearer error="invalid_token", error_description="No token", resource_metadata="http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp", scope="mcp:tools files""#).unwrap();
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(c.scope.as_deref(), Some("mcp:tools files"));
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        // Another scheme first, unquoted values, escapes.
        let c = parse(r#"Basic realm="x", Bearer resource_metadata=http://h/m, scope="a \"b\"""#)
            .unwrap();
        assert_eq!(c.resource_metadata.as_deref(), Some("http://h/m"));
        assert_eq!(c.scope.as_deref(), Some(r#"a "b""#));
        assert_eq!(parse("Bearer").unwrap(), Challenge::default());
        assert!(parse(r#"Basic realm="x""#).is_none());
        assert!(parse("Bearerx a=b").is_none());
    }
}
