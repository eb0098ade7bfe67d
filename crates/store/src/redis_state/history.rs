//! Policy history in Redis.

use super::*;

impl PolicyHistory for RedisState {
    fn record_policy_version(&self, v: &PolicyVersion) -> Result<(), StoreError> {
        let doc = serde_json::to_string(&VersionDoc {
            document: v.document.clone(),
            author: v.author.clone(),
            created_at_ms: v.created_at_ms,
        })
        .map_err(|e| self.err(e))?;
        let _: i64 = self.with(|c| {
            self.scripts
                .record_version
                .key(format!("toolgate:pv:{}", v.name))
                .key(format!("toolgate:pv-order:{}", v.name))
                .arg(&v.version)
                .arg(&doc)
                .invoke(c)
        })?;
        Ok(())
    }

    fn policy_versions(&self, name: &str) -> Result<Vec<PolicyVersion>, StoreError> {
        let (order, docs): (Vec<String>, HashMap<String, String>) = self.read(|c| {
            redis::pipe()
                .cmd("ZREVRANGE")
                .arg(format!("toolgate:pv-order:{name}"))
                .arg(0)
                .arg(-1)
                .cmd("HGETALL")
                .arg(format!("toolgate:pv:{name}"))
                .query(c)
        })?;
        order
            .iter()
            .filter_map(|version| docs.get(version).map(|d| (version, d)))
            .map(|(version, d)| self.version_from(name, version, d))
            .collect()
    }

    fn policy_version(&self, name: &str, version: &str) -> Result<PolicyVersion, StoreError> {
        let doc: Option<String> = self.read(|c| {
            redis::cmd("HGET")
                .arg(format!("toolgate:pv:{name}"))
                .arg(version)
                .query(c)
        })?;
        match doc {
            Some(d) => self.version_from(name, version, &d),
            None => Err(StoreError::NotFound(format!(
                "policy `{name}` version `{version}`"
            ))),
        }
    }
}
