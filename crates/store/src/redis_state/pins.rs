//! Tool pins in Redis: observed definitions, held changes, capabilities seen.

use super::*;

fn pins_key(server: &str) -> String {
    format!("toolgate:pins:{server}")
}

fn held_key(server: &str) -> String {
    format!("toolgate:held:{server}")
}

fn caps_key(server: &str) -> String {
    format!("toolgate:pin-caps:{server}")
}

impl PinStore for RedisState {
    fn pins(&self, server: &str) -> Result<Vec<Pin>, StoreError> {
        let all: HashMap<String, String> = self.hash(&pins_key(server))?;
        let mut pins = all
            .iter()
            .map(|(tool, json)| parse_pin(json, server, tool))
            .collect::<Result<Vec<_>, _>>()?;
        pins.sort_by(|a, b| a.tool.cmp(&b.tool));
        Ok(pins)
    }

    fn observe_tools(
        &self,
        server: &str,
        tools: &[(String, String, String)],
        now_ms: u64,
    ) -> Result<Observed, StoreError> {
        let (changed, pins): (Vec<String>, Vec<String>) = self.with(|c| {
            let mut inv = self.scripts.observe.prepare_invoke();
            inv.key(pins_key(server)).key(held_key(server)).arg(now_ms);
            for (tool, hash, definition) in tools {
                inv.arg(tool).arg(hash).arg(definition);
            }
            inv.invoke(c)
        })?;
        let pins = tools
            .iter()
            .zip(&pins)
            .map(|((tool, _, _), json)| parse_pin(json, server, tool))
            .collect::<Result<Vec<_>, _>>()?;
        let changed = changed
            .chunks(2)
            .filter_map(|p| match p {
                [tool, what] => Some((tool.clone(), what.clone())),
                _ => None,
            })
            .collect();
        Ok(Observed { pins, changed })
    }

    fn observe_capabilities(
        &self,
        server: &str,
        caps: &str,
        _now_ms: u64,
    ) -> Result<bool, StoreError> {
        let added: i64 =
            self.with(|c| redis::cmd("SADD").arg(caps_key(server)).arg(caps).query(c))?;
        Ok(added == 1)
    }

    fn is_held(&self, server: &str, tool: &str) -> Result<bool, StoreError> {
        self.read(|c| {
            redis::cmd("SISMEMBER")
                .arg(held_key(server))
                .arg(tool)
                .query(c)
        })
    }

    fn approve_pin(&self, server: &str, tool: &str, now_ms: u64) -> Result<Pin, StoreError> {
        let json: Option<String> = self.with_change(|c| {
            self.scripts
                .approve_pin
                .key(pins_key(server))
                .key(held_key(server))
                .arg(tool)
                .arg(now_ms)
                .invoke(c)
        })?;
        match json {
            Some(j) => parse_pin(&j, server, tool),
            None => Err(StoreError::NotFound(format!(
                "{server}/{tool} (no change is waiting for approval)"
            ))),
        }
    }
}
