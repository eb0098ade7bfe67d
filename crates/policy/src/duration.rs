//! Windows (`minute`, `3600`) and durations (`10m`, `7d`) as written in documents.

use serde_json::Value;

/// Seconds of a limit `window`: `second`, `minute`, `hour`, `day`, or a whole number of seconds.
pub fn window_secs(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => match s.as_str() {
            "second" => Some(1),
            "minute" => Some(60),
            "hour" => Some(3600),
            "day" => Some(86_400),
            _ => None,
        },
        Value::Number(n) => n.as_u64().filter(|&s| s > 0),
        _ => None,
    }
}

/// Seconds of a duration: a whole number of seconds, or a string like `30s`, `10m`, `2h`, `7d`.
pub fn duration_secs(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().filter(|&s| s > 0),
        Value::String(s) => parse_duration(s),
        _ => None,
    }
}

/// Parses `30s`, `10m`, `2h`, `7d`, `1w` or a bare number of seconds; `None` for zero or garbage.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&s| s > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn windows() {
        assert_eq!(window_secs(&json!("minute")), Some(60));
        assert_eq!(window_secs(&json!(90)), Some(90));
        assert_eq!(window_secs(&json!(0)), None);
        assert_eq!(window_secs(&json!(1.5)), None);
        assert_eq!(window_secs(&json!("fortnight")), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("7d"), Some(604_800));
        assert_eq!(parse_duration("45"), Some(45));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5 years"), None);
    }
}
