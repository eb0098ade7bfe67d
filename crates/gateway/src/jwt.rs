//! JWT identities (`[auth.jwt]`): an agent may present a JWT from the configured issuer
//! instead of a grant token. Its signature (JWKS from a file or a URL), issuer, audience
//! and times are checked; the identity claim (default `sub`) picks the grant bound to that
//! identity on the server (`toolgate grants create --identity …`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::{JwksSource, JwtConfig};

/// How often a JWKS URL may be fetched again for an unknown key id.
const REFETCH_AFTER: Duration = Duration::from_secs(60);

/// Checks JWTs against one issuer's keys.
pub struct JwtVerifier {
    cfg: JwtConfig,
    keys: Mutex<(JwkSet, Option<Instant>)>,
    http: reqwest::Client,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.cfg.issuer)
            .finish()
    }
}

/// True when a bearer token has the shape of a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().take(2).all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

async fn load_keys(http: &reqwest::Client, source: &JwksSource) -> Result<JwkSet, String> {
    let text = match source {
        JwksSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the JWKS `{}`: {e}", path.display()))?,
        JwksSource::Url(url) => http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("cannot fetch the JWKS {url}: {e}"))?
            .text()
            .await
            .map_err(|e| format!("cannot read the JWKS {url}: {e}"))?,
    };
    serde_json::from_str(&text).map_err(|e| format!("the JWKS is not a valid key set: {e}"))
}

impl JwtVerifier {
    /// Loads the keys; errors name the file or URL.
    pub async fn new(cfg: JwtConfig, http: reqwest::Client) -> Result<Arc<Self>, String> {
        let keys = load_keys(&http, &cfg.jwks).await?;
        Ok(Arc::new(JwtVerifier {
            cfg,
            keys: Mutex::new((keys, Some(Instant::now()))),
            http,
        }))
    }

    /// The issuer (for the protected resource metadata).
    pub fn issuer(&self) -> &str {
        &self.cfg.issuer
    }

    /// Fetches a URL's keys again when a token names a key id not seen (at most once a
    /// minute), so the issuer can rotate keys without a restart.
    pub async fn refresh_if_unknown(&self, token: &str) {
        let JwksSource::Url(_) = &self.cfg.jwks else {
            return;
        };
        let Ok(header) = decode_header(token) else {
            return;
        };
        let Some(kid) = header.kid else {
            return;
        };
        {
            let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            let recent = keys.1.is_some_and(|t| t.elapsed() < REFETCH_AFTER);
            if keys.0.find(&kid).is_some() || recent {
                return;
            }
        }
        match load_keys(&self.http, &self.cfg.jwks).await {
            Ok(fresh) => {
                *self.keys.lock().unwrap_or_else(|e| e.into_inner()) = (fresh, Some(Instant::now()))
            }
            Err(e) => tracing::warn!("JWKS refresh failed: {e}"),
        }
    }

    /// Verifies a JWT; returns the identity it names.
    pub fn verify(&self, token: &str) -> Result<String, String> {
        let header = decode_header(token).map_err(|e| format!("malformed JWT: {e}"))?;
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let jwk = match &header.kid {
            Some(kid) => keys.0.find(kid),
            None if keys.0.keys.len() == 1 => keys.0.keys.first(),
            None => None,
        }
        .ok_or_else(|| "the JWT's key is not in the issuer's key set".to_string())?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err("symmetric JWT algorithms are not accepted".into());
        }
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = 30;
        let data = decode::<Value>(token, &key, &v).map_err(|e| format!("JWT refused: {e}"))?;
        match data.claims.get(&self.cfg.identity_claim) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(format!(
                "the JWT has no `{}` claim naming the identity",
                self.cfg.identity_claim
            )),
        }
    }
}
