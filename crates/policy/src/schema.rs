//! `validate_arguments`: a call's arguments checked against the `inputSchema` of the
//! tool's pinned definition (JSON Schema 2020-12 by default; draft-07 and the others
//! when the schema's `$schema` names them).
//!
//! Pure: the `jsonschema` crate is built without its HTTP and file resolvers, so a
//! schema whose `$ref` points outside itself does not compile ([`ArgsSchema::compile`]
//! fails, and the gateway denies: fail closed). Compile once per pinned definition and
//! keep the [`ArgsSchema`]; [`validate_args`] compiles every time.
//!
//! A [`Violation`] names the argument (`args.items.0.qty`) and the schema rule
//! (`minimum`, at `/properties/items/items/properties/qty/minimum`), never the value:
//! it goes into the denial the agent reads and the audit record.

use serde_json::Value;

/// Why arguments were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The failing argument's path (`args`, `args.amount`, `args.items.0.qty`).
    pub path: String,
    /// The schema keyword that failed (`type`, `required`, `minimum`, …), or
    /// `(invalid schema)` when the tool's schema itself does not compile.
    pub rule: String,
    /// JSON Pointer of the failing keyword in the schema (empty for an invalid schema).
    pub schema_path: String,
    /// A sentence without the argument's value (`value is less than the minimum of 0`).
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.schema_path.is_empty() {
            write!(f, "`{}`: {}", self.path, self.message)
        } else {
            write!(
                f,
                "`{}`: {} (schema rule `{}` at `{}`)",
                self.path, self.message, self.rule, self.schema_path
            )
        }
    }
}

/// The label of a violation caused by a schema that does not compile.
pub const INVALID_SCHEMA: &str = "(invalid schema)";

/// A compiled `inputSchema`.
pub struct ArgsSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for ArgsSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArgsSchema")
    }
}

/// `/items/0/qty` → `args.items.0.qty`.
fn arg_path(pointer: &str) -> String {
    let mut out = String::from("args");
    for token in pointer.split('/').skip(1) {
        out.push('.');
        out.push_str(&token.replace("~1", "/").replace("~0", "~"));
    }
    out
}

impl ArgsSchema {
    /// Compiles a tool's `inputSchema`. An absent schema should be passed as `{}` (every
    /// argument object is then valid). A schema that does not compile (a bad keyword
    /// value, an outside `$ref`) gives a violation with rule [`INVALID_SCHEMA`].
    pub fn compile(schema: &Value) -> Result<ArgsSchema, Violation> {
        jsonschema::validator_for(schema)
            .map(|validator| ArgsSchema { validator })
            .map_err(|e| Violation {
                path: "args".to_string(),
                rule: INVALID_SCHEMA.to_string(),
                schema_path: String::new(),
                message: format!(
                    "the tool's inputSchema is not a schema toolgate can check: {}",
                    e.masked()
                ),
            })
    }

    /// The first violation of `args` (in the validator's order), if any.
    pub fn check(&self, args: &Value) -> Result<(), Violation> {
        match self.validator.iter_errors(args).next() {
            None => Ok(()),
            Some(e) => Err(Violation {
                path: arg_path(e.instance_path().as_str()),
                rule: e.kind().keyword().to_string(),
                schema_path: e.schema_path().as_str().to_string(),
                message: e.masked().to_string(),
            }),
        }
    }
}

/// Checks `args` against `schema` (compiling it each time: keep an [`ArgsSchema`] when
/// the same schema is used again).
pub fn validate_args(schema: &Value, args: &Value) -> Result<(), Violation> {
    ArgsSchema::compile(schema)?.check(args)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "amount": {"type": "integer", "minimum": 0},
                "currency": {"enum": ["usd", "eur"]},
                "items": {"type": "array", "items": {"type": "object", "properties": {"qty": {"type": "integer", "minimum": 1}}}}
            },
            "required": ["amount"],
            "additionalProperties": false
        })
    }

    #[test]
    fn valid_arguments_pass() {
        validate_args(&schema(), &json!({"amount": 5, "currency": "usd"})).unwrap();
        validate_args(&json!({}), &json!({"anything": [1, 2]})).unwrap();
    }

    #[test]
    fn violations_name_the_argument_and_the_rule_not_the_value() {
        let v = validate_args(&schema(), &json!({"amount": -4123})).unwrap_err();
        assert_eq!(v.path, "args.amount");
        assert_eq!(v.rule, "minimum");
        assert_eq!(v.schema_path, "/properties/amount/minimum");
        assert!(!v.message.contains("4123"), "{v}");
        let v = validate_args(&schema(), &json!({"amount": 1, "items": [{"qty": 0}]})).unwrap_err();
        assert_eq!(v.path, "args.items.0.qty");
        assert_eq!(v.rule, "minimum");
        let v = validate_args(&schema(), &json!({"currency": "usd"})).unwrap_err();
        assert_eq!((v.path.as_str(), v.rule.as_str()), ("args", "required"));
        assert!(v.message.contains("amount"), "{v}");
        let v = validate_args(&schema(), &json!({"amount": 1, "token": "sk_live_x"})).unwrap_err();
        assert_eq!(v.rule, "additionalProperties");
        let v = validate_args(&schema(), &json!({"amount": "ten"})).unwrap_err();
        assert_eq!(v.rule, "type");
        assert!(!v.message.contains("ten"), "{v}");
        assert_eq!(
            v.to_string(),
            format!(
                "`args.amount`: {} (schema rule `type` at `/properties/amount/type`)",
                v.message
            )
        );
    }

    #[test]
    fn draft_07_is_read_as_draft_07() {
        // In draft-07 `items` may be an array (tuple form); `additionalItems` limits the rest.
        let s = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"pair": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}], "additionalItems": false}}
        });
        validate_args(&s, &json!({"pair": ["a", 1]})).unwrap();
        let v = validate_args(&s, &json!({"pair": ["a", 1, 2]})).unwrap_err();
        assert_eq!(v.rule, "additionalItems");
        let v = validate_args(&s, &json!({"pair": [1, 1]})).unwrap_err();
        assert_eq!((v.path.as_str(), v.rule.as_str()), ("args.pair.0", "type"));
    }

    #[test]
    fn big_numbers_are_compared_exactly() {
        let s = json!({"type": "object", "properties": {"n": {"type": "integer", "maximum": 9007199254740993u64}}});
        let args: Value = serde_json::from_str(r#"{"n": 9007199254740994}"#).unwrap();
        assert_eq!(validate_args(&s, &args).unwrap_err().rule, "maximum");
        let args: Value = serde_json::from_str(r#"{"n": 9007199254740993}"#).unwrap();
        validate_args(&s, &args).unwrap();
    }

    #[test]
    fn schemas_that_do_not_compile_or_reach_outside_fail_closed() {
        let v = validate_args(&json!({"type": "nonsense"}), &json!({})).unwrap_err();
        assert_eq!(v.rule, INVALID_SCHEMA);
        let v = validate_args(
            &json!({"$ref": "https://example.com/schema.json"}),
            &json!({}),
        )
        .unwrap_err();
        assert_eq!(v.rule, INVALID_SCHEMA);
    }
}
