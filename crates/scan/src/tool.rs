//! Tool definitions as a server declares them.

use serde_json::Value;

/// One tool definition: the parts the classifier reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    /// `name`.
    pub name: String,
    /// `title`, if any.
    pub title: Option<String>,
    /// `description` (empty when absent).
    pub description: String,
    /// `inputSchema` (`{}` when absent).
    pub input_schema: Value,
    /// `annotations` (`{}` when absent).
    pub annotations: Value,
}

impl ToolDef {
    /// Reads one tool object; `None` without a string `name`.
    pub fn from_value(v: &Value) -> Option<ToolDef> {
        Some(ToolDef {
            name: v.get("name")?.as_str()?.to_string(),
            title: v.get("title").and_then(Value::as_str).map(str::to_string),
            description: v
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            input_schema: v
                .get("inputSchema")
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default())),
            annotations: v
                .get("annotations")
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default())),
        })
    }

    /// An annotation hint, if declared.
    pub fn hint(&self, name: &str) -> Option<bool> {
        self.annotations.get(name).and_then(Value::as_bool)
    }

    /// The input schema's property names and descriptions, nested objects included.
    pub fn properties(&self) -> Vec<(String, String)> {
        let mut out = vec![];
        collect(&self.input_schema, &mut out, 0);
        out
    }

    /// The number of top-level input properties.
    pub fn property_count(&self) -> usize {
        self.input_schema
            .get("properties")
            .and_then(Value::as_object)
            .map_or(0, |m| m.len())
    }
}

fn collect(schema: &Value, out: &mut Vec<(String, String)>, depth: usize) {
    if depth > 4 {
        return;
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let d = v
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            out.push((k.clone(), d));
            collect(v, out, depth + 1);
            if let Some(items) = v.get("items") {
                collect(items, out, depth + 1);
            }
        }
    }
}

/// Reads the tools of a saved `tools/list` result: `{"tools": [...]}`, a JSON-RPC
/// response with `result.tools`, or a bare array.
pub fn tools_from_list_result(v: &Value) -> Option<Vec<ToolDef>> {
    let arr = v
        .get("tools")
        .or_else(|| v.pointer("/result/tools"))
        .or(if v.is_array() { Some(v) } else { None })?
        .as_array()?;
    Some(arr.iter().filter_map(ToolDef::from_value).collect())
}
