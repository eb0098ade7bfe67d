//! Reporting: a tiny read-only SQL look-alike over the in-memory tables, and
//! the sections of the monthly practice report.

use std::cmp::Ordering;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::data::{DomainError, Practice};

/// The tables `run_report_sql` knows.
pub(crate) const TABLES: [&str; 9] = [
    "patients",
    "providers",
    "appointments",
    "treatment_plans",
    "invoices",
    "payments",
    "refunds",
    "clinical_notes",
    "checkout_sessions",
];

/// Words that would make a statement write or escape the sandbox.
const FORBIDDEN: [&str; 12] = [
    "insert", "update", "delete", "drop", "alter", "create", "truncate", "replace", "grant",
    "attach", "pragma", "merge",
];

fn rows<T: Serialize>(records: impl Iterator<Item = T>) -> Vec<Value> {
    records
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect()
}

impl Practice {
    fn table(&self, name: &str) -> Option<Vec<Value>> {
        Some(match name {
            "patients" => rows(self.patients.values()),
            "providers" => rows(self.providers.values()),
            "appointments" => rows(self.appointments.values()),
            "treatment_plans" => rows(self.plans.values()),
            "invoices" => rows(self.invoices.values()),
            "payments" => rows(self.payments.values()),
            "refunds" => rows(self.refunds.values()),
            "clinical_notes" => rows(self.notes.values()),
            "checkout_sessions" => rows(self.checkouts.values()),
            _ => return None,
        })
    }
}

/// One lexical token of the statement.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64),
    Symbol(String),
}

fn invalid(message: impl Into<String>) -> DomainError {
    DomainError::Invalid(message.into())
}

fn tokenize(sql: &str) -> Result<Vec<Token>, DomainError> {
    let mut tokens = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        text.push('\'');
                    }
                    Some('\'') => break,
                    Some(ch) => text.push(ch),
                    None => return Err(invalid("unterminated string literal")),
                }
            }
            tokens.push(Token::Text(text));
        } else if c.is_ascii_digit() {
            let mut digits = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit() || **d == '.') {
                digits.push(d);
                chars.next();
            }
            let n = digits
                .parse()
                .map_err(|_| invalid(format!("bad number `{digits}`")))?;
            tokens.push(Token::Number(n));
        } else if c.is_alphanumeric() || c == '_' {
            let mut word = String::new();
            while let Some(&w) = chars.peek().filter(|w| w.is_alphanumeric() || **w == '_') {
                word.push(w.to_ascii_lowercase());
                chars.next();
            }
            tokens.push(Token::Word(word));
        } else {
            chars.next();
            let mut symbol = c.to_string();
            if let Some(&next) = chars
                .peek()
                .filter(|n| matches!((c, **n), ('<' | '>' | '!', '=') | ('<', '>')))
            {
                symbol.push(next);
                chars.next();
            }
            tokens.push(Token::Symbol(symbol));
        }
    }
    Ok(tokens)
}

/// What the statement selects.
enum Projection {
    All,
    Count,
    Sum(String),
    Columns(Vec<String>),
}

struct Condition {
    column: String,
    op: String,
    value: Value,
}

/// A cursor over the tokens with small helpers for the grammar.
struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let hit = matches!(self.peek(), Some(Token::Word(w)) if w == word);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let hit = matches!(self.peek(), Some(Token::Symbol(s)) if s == symbol);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn word(&mut self, what: &str) -> Result<String, DomainError> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w),
            other => Err(invalid(format!("expected {what}, found {other:?}"))),
        }
    }

    fn projection(&mut self) -> Result<Projection, DomainError> {
        if self.eat_symbol("*") {
            return Ok(Projection::All);
        }
        if self.eat_word("count") {
            let ok = self.eat_symbol("(") && self.eat_symbol("*") && self.eat_symbol(")");
            return ok
                .then_some(Projection::Count)
                .ok_or_else(|| invalid("only COUNT(*) is supported"));
        }
        if self.eat_word("sum") {
            let ok = self.eat_symbol("(");
            let column = self.word("a column name")?;
            return (ok && self.eat_symbol(")"))
                .then_some(Projection::Sum(column))
                .ok_or_else(|| invalid("expected SUM(column)"));
        }
        let mut columns = vec![self.word("a column list")?];
        while self.eat_symbol(",") {
            columns.push(self.word("a column name")?);
        }
        Ok(Projection::Columns(columns))
    }

    fn condition(&mut self) -> Result<Condition, DomainError> {
        let column = self.word("a column name")?;
        let op = match self.next() {
            Some(Token::Symbol(s))
                if ["=", "!=", "<>", "<", ">", "<=", ">="].contains(&s.as_str()) =>
            {
                s
            }
            other => return Err(invalid(format!("expected a comparison, found {other:?}"))),
        };
        let value = match self.next() {
            Some(Token::Text(t)) => json!(t),
            Some(Token::Number(n)) => json!(n),
            Some(Token::Word(w)) if w == "null" => Value::Null,
            Some(Token::Word(w)) if w == "true" || w == "false" => json!(w == "true"),
            other => return Err(invalid(format!("expected a literal, found {other:?}"))),
        };
        Ok(Condition { column, op, value })
    }
}

fn compare(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn matches(row: &Value, c: &Condition) -> bool {
    let field = row.get(&c.column).unwrap_or(&Value::Null);
    let ordering = compare(field, &c.value);
    match c.op.as_str() {
        "=" => ordering == Some(Ordering::Equal),
        "!=" | "<>" => ordering != Some(Ordering::Equal),
        "<" => ordering == Some(Ordering::Less),
        ">" => ordering == Some(Ordering::Greater),
        "<=" => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
        _ => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
    }
}

impl Practice {
    /// Answer one read-only `SELECT` over the in-memory tables.
    ///
    /// Grammar: `SELECT * | COUNT(*) | SUM(col) | col, ... FROM table
    /// [WHERE col op literal [AND ...]] [ORDER BY col [ASC|DESC]] [LIMIT n]`.
    pub(crate) fn run_report_sql(&self, sql: &str) -> Result<Value, DomainError> {
        let tokens = tokenize(sql)?;
        for token in &tokens {
            if let Token::Word(w) = token {
                if FORBIDDEN.contains(&w.as_str()) {
                    return Err(invalid(format!(
                        "read-only: `{}` is not allowed, only SELECT statements run",
                        w.to_uppercase()
                    )));
                }
            }
        }
        let mut p = Parser { tokens, at: 0 };
        if !p.eat_word("select") {
            return Err(invalid("read-only: only SELECT statements run"));
        }
        let projection = p.projection()?;
        if !p.eat_word("from") {
            return Err(invalid("expected FROM"));
        }
        let table = p.word("a table name")?;
        let mut rows = self.table(&table).ok_or_else(|| {
            invalid(format!(
                "unknown table `{table}`; tables: {}",
                TABLES.join(", ")
            ))
        })?;
        if p.eat_word("where") {
            let mut conditions = vec![p.condition()?];
            while p.eat_word("and") {
                conditions.push(p.condition()?);
            }
            rows.retain(|row| conditions.iter().all(|c| matches(row, c)));
        }
        if p.eat_word("order") {
            if !p.eat_word("by") {
                return Err(invalid("expected ORDER BY"));
            }
            let column = p.word("a column name")?;
            let descending = p.eat_word("desc");
            if !descending {
                p.eat_word("asc");
            }
            rows.sort_by(|a, b| {
                let by = |r: &Value| r.get(&column).cloned().unwrap_or(Value::Null);
                let ordering = compare(&by(a), &by(b)).unwrap_or(Ordering::Equal);
                if descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            });
        }
        if p.eat_word("limit") {
            match p.next() {
                Some(Token::Number(n)) if n >= 0.0 && n.fract() == 0.0 => {
                    rows.truncate(n.min(10_000.0) as usize);
                }
                _ => return Err(invalid("LIMIT takes a whole number")),
            }
        }
        p.eat_symbol(";");
        if let Some(extra) = p.peek() {
            return Err(invalid(format!(
                "unsupported or trailing input at {extra:?}; one SELECT statement only"
            )));
        }
        Ok(match projection {
            Projection::Count => json!({ "columns": ["count"], "rows": [[rows.len()]] }),
            Projection::Sum(column) => {
                let total: f64 = rows
                    .iter()
                    .filter_map(|r| r.get(&column).and_then(Value::as_f64))
                    .sum();
                json!({ "columns": [format!("sum({column})")], "rows": [[total]] })
            }
            Projection::All => json!({ "row_count": rows.len(), "rows": rows }),
            Projection::Columns(columns) => {
                let picked: Vec<Value> = rows
                    .iter()
                    .map(|r| {
                        columns
                            .iter()
                            .map(|c| r.get(c).cloned().unwrap_or(Value::Null))
                            .collect()
                    })
                    .collect();
                json!({ "columns": columns, "row_count": picked.len(), "rows": picked })
            }
        })
    }
}

/// The steps of the monthly report, in the order they are computed.
pub(crate) const REPORT_STEPS: [&str; 5] = [
    "appointments",
    "production",
    "collections",
    "treatment_acceptance",
    "patients",
];

impl Practice {
    /// Compute one section of the monthly report for `month` (`YYYY-MM`).
    pub(crate) fn report_section(&self, step: &str, month: &str, by_provider: bool) -> Value {
        let in_month = |date: &str| date.starts_with(month);
        match step {
            "appointments" => {
                let mut counts = Map::new();
                for a in self.appointments.values().filter(|a| in_month(&a.start)) {
                    let n = counts.get(&a.status).and_then(Value::as_u64).unwrap_or(0);
                    counts.insert(a.status.clone(), json!(n + 1));
                }
                Value::Object(counts)
            }
            "production" => {
                let invoices: Vec<_> = self
                    .invoices
                    .values()
                    .filter(|i| in_month(&i.issued_on))
                    .collect();
                let total: u64 = invoices.iter().map(|i| i.total_cents).sum();
                let mut out = json!({ "invoiced_cents": total, "invoices": invoices.len() });
                if by_provider {
                    let mut minutes = Map::new();
                    for a in self
                        .appointments
                        .values()
                        .filter(|a| in_month(&a.start) && a.status == "completed")
                    {
                        let n = minutes.get(&a.provider_id).and_then(Value::as_u64);
                        let total = n.unwrap_or(0) + u64::from(a.duration_minutes);
                        minutes.insert(a.provider_id.clone(), json!(total));
                    }
                    out["chair_minutes_by_provider"] = Value::Object(minutes);
                }
                out
            }
            "collections" => {
                let received: u64 = self
                    .payments
                    .values()
                    .filter(|p| in_month(&p.received_on))
                    .map(|p| p.amount_cents)
                    .sum();
                let refunded: u64 = self
                    .refunds
                    .values()
                    .filter(|r| in_month(&r.created_on))
                    .map(|r| r.amount_cents)
                    .sum();
                json!({ "received_cents": received, "refunded_cents": refunded,
                        "net_cents": i128::from(received) - i128::from(refunded) })
            }
            "treatment_acceptance" => {
                let presented = self.plans.len();
                let accepted = self
                    .plans
                    .values()
                    .filter(|p| {
                        matches!(p.status.as_str(), "accepted" | "in_progress" | "completed")
                    })
                    .count();
                let rate = if presented == 0 {
                    0.0
                } else {
                    accepted as f64 / presented as f64
                };
                json!({ "plans": presented, "accepted": accepted, "acceptance_rate": rate })
            }
            _ => {
                let new = self
                    .patients
                    .values()
                    .filter(|p| in_month(&p.created_on))
                    .count();
                let owing: i64 = self.patients.values().map(|p| p.balance_cents.max(0)).sum();
                json!({ "active": self.patients.len(), "new": new,
                        "outstanding_balances_cents": owing })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sql: &str) -> Result<Value, DomainError> {
        Practice::seeded().run_report_sql(sql)
    }

    #[test]
    fn answers_simple_selects() -> Result<(), DomainError> {
        let count = run("SELECT COUNT(*) FROM patients")?;
        assert_eq!(count["rows"][0][0], json!(4));
        let sum = run("select sum(total_cents) from invoices where status = 'open';")?;
        assert_eq!(sum["rows"][0][0], json!(48000.0));
        let picked = run(
            "SELECT id, start FROM appointments WHERE provider_id = 'prov_01' \
             AND status != 'cancelled' ORDER BY start DESC LIMIT 2",
        )?;
        assert_eq!(picked["row_count"], json!(2));
        assert_eq!(picked["rows"][0][0], json!("apt_2005"));
        Ok(())
    }

    #[test]
    fn refuses_writes_and_nonsense() {
        for sql in [
            "DELETE FROM patients",
            "SELECT * FROM patients; DROP TABLE patients",
            "UPDATE invoices SET paid_cents = 0",
            "SELECT * FROM secrets",
            "SELECT * FROM patients WHERE",
            "SELECT name FROM patients WHERE note = 'unterminated",
        ] {
            assert!(run(sql).is_err(), "{sql} should fail");
        }
    }
}
