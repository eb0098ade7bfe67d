//! Grants and admin tokens in Redis.

use super::*;

impl GrantStore for RedisState {
    fn create_grant(&self, new: &NewGrant, now_ms: u64) -> Result<(Grant, String), StoreError> {
        let (grant, token) = new.mint(now_ms)?;
        let hash = hash_token(&token);
        let mut fields = vec![
            ("id", grant.id.clone()),
            ("label", grant.label.clone()),
            ("server", grant.server.clone()),
            ("identity", grant.identity.clone()),
            ("token_hash", hash.clone()),
            ("token_prefix", grant.token_prefix.clone()),
            ("created_at_ms", now_ms.to_string()),
        ];
        if let Some(p) = &grant.policy {
            fields.push(("policy", p.clone()));
        }
        if let Some(e) = grant.expires_at_ms {
            fields.push(("expires_at_ms", e.to_string()));
        }
        let ident = ident_key(&grant.server, &grant.identity);
        self.insert_tokened(
            (&grant_key(&grant.id), &fields),
            ("toolgate:grants", &grant.id, now_ms),
            &format!("toolgate:grant-token:{hash}"),
            |p| {
                p.sadd(&ident, &grant.id).ignore();
            },
        )?;
        Ok((grant, token))
    }

    fn list_grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.grants_by_ids(&self.ids("toolgate:grants")?)
    }

    fn grant_count(&self) -> Result<u64, StoreError> {
        self.read(|c| redis::cmd("ZCARD").arg("toolgate:grants").query(c))
    }

    fn grant(&self, id: &str) -> Result<Grant, StoreError> {
        let f = self.hash(&grant_key(id))?;
        if f.is_empty() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        grant_from(&f).ok_or_else(|| corrupt("a grant"))
    }

    fn rotate_grant(&self, id: &str) -> Result<(Grant, String), StoreError> {
        let token = new_token()?;
        let prefix: String = token.chars().take(9).collect();
        let n: i64 = self.with_change(|c| {
            self.scripts
                .rotate
                .key(grant_key(id))
                .arg(hash_token(&token))
                .arg(&prefix)
                .arg(id)
                .arg("toolgate:grant-token:")
                .invoke(c)
        })?;
        if n == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok((self.grant(id)?, token))
    }

    fn revoke_grant(&self, id: &str, now_ms: u64) -> Result<Grant, StoreError> {
        let n: i64 =
            self.with_change(|c| self.scripts.revoke.key(grant_key(id)).arg(now_ms).invoke(c))?;
        if n == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        self.grant(id)
    }

    fn grant_by_token(&self, token: &str) -> Result<Option<Grant>, StoreError> {
        match self.by_token("toolgate:grant-token:", grant_key, token)? {
            Some(f) => Ok(Some(grant_from(&f).ok_or_else(|| corrupt("a grant"))?)),
            None => Ok(None),
        }
    }

    fn grant_for_identity(
        &self,
        server: &str,
        identity: &str,
        now_ms: u64,
    ) -> Result<Option<Grant>, StoreError> {
        let ids: Vec<String> = self.read(|c| {
            redis::cmd("SMEMBERS")
                .arg(ident_key(server, identity))
                .query(c)
        })?;
        let mut grants = self.grants_by_ids(&ids)?;
        grants.retain(|g| {
            g.server == server
                && g.identity == identity
                && g.status(now_ms) == crate::GrantStatus::Active
        });
        grants.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
        Ok(grants.into_iter().next())
    }
}

impl AdminStore for RedisState {
    fn create_admin_token(
        &self,
        name: &str,
        role: Role,
        now_ms: u64,
    ) -> Result<(AdminToken, String), StoreError> {
        let (t, token) = AdminToken::mint(name, role, now_ms)?;
        let hash = hash_token(&token);
        let fields = [
            ("id", t.id.clone()),
            ("name", t.name.clone()),
            ("role", role.as_str().to_string()),
            ("token_hash", hash.clone()),
            ("token_prefix", t.token_prefix.clone()),
            ("created_at_ms", now_ms.to_string()),
        ];
        self.insert_tokened(
            (&admin_key(&t.id), &fields),
            ("toolgate:admins", &t.id, now_ms),
            &format!("toolgate:admin-token:{hash}"),
            |_| {},
        )?;
        Ok((t, token))
    }

    fn admin_tokens(&self) -> Result<Vec<AdminToken>, StoreError> {
        let ids = self.ids("toolgate:admins")?;
        let keys: Vec<String> = ids.iter().map(|id| admin_key(id)).collect();
        self.hashes(&keys)?
            .iter()
            .filter(|f| !f.is_empty())
            .map(|f| admin_from(f).ok_or_else(|| corrupt("an admin token")))
            .collect()
    }

    fn revoke_admin_token(&self, id: &str, now_ms: u64) -> Result<(), StoreError> {
        let n: i64 =
            self.with_change(|c| self.scripts.revoke.key(admin_key(id)).arg(now_ms).invoke(c))?;
        if n == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok(())
    }

    fn admin_by_token(&self, token: &str) -> Result<Option<AdminToken>, StoreError> {
        let Some(f) = self.by_token("toolgate:admin-token:", admin_key, token)? else {
            return Ok(None);
        };
        let t = admin_from(&f).ok_or_else(|| corrupt("an admin token"))?;
        Ok(t.revoked_at_ms.is_none().then_some(t))
    }
}
