//! JWT identities (`[auth.jwt]`): an agent may present a JWT from the configured issuer
//! instead of a grant token. Its signature (JWKS from a file or a URL), issuer, audience
//! and times are checked; the identity claim (default `sub`) picks the grant bound to that
//! identity on the server (`toolgate grants create --identity …`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::{JwksSource, JwtConfig};

/// How often a JWKS URL may be fetched again for an unknown key id.
const REFETCH_AFTER: Duration = Duration::from_secs(60);

/// Clock skew tolerated on `exp` and `nbf`, in seconds (docs/CONFIG.md `[auth.jwt]`).
const LEEWAY_SECS: u64 = 30;

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
        v.validate_exp = true;
        // `nbf` is optional, but when present it is enforced (off by default in the library).
        v.validate_nbf = true;
        v.leeway = LEEWAY_SECS;
        let data = decode::<Value>(token, &key, &v).map_err(|e| match e.kind() {
            ErrorKind::ImmatureSignature => format!(
                "JWT refused: it is not valid yet (its `nbf` is more than {LEEWAY_SECS} s in the future)"
            ),
            ErrorKind::ExpiredSignature => format!(
                "JWT refused: it has expired (its `exp` is more than {LEEWAY_SECS} s in the past)"
            ),
            _ => format!("JWT refused: {e}"),
        })?;
        match data.claims.get(&self.cfg.identity_claim) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(format!(
                "the JWT has no `{}` claim naming the identity",
                self.cfg.identity_claim
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    /// A fixed Ed25519 test key (PKCS#8 DER; never used outside these tests) and its
    /// public JWK `x`.
    const TEST_KEY_DER: &[u8] = &[
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20, 0x07, 0x7b, 0xca, 0xe2, 0x33, 0x8c, 0x55, 0xe2, 0x19, 0x58, 0xde, 0x2c, 0xf7, 0xf8,
        0xfd, 0x99, 0x5e, 0x11, 0x82, 0xee, 0x71, 0x83, 0xac, 0x13, 0xd1, 0x07, 0x02, 0xef, 0x20,
        0x31, 0x71, 0xa2,
    ];
    const TEST_KEY_X: &str = "eM-g8tsaJLwdRUw6Qy6HWE_d9BAShljsDLjDxSBxtoc";
    const ISSUER: &str = "https://issuer.test.example";
    const AUDIENCE: &str = "toolgate-test";

    fn verifier() -> JwtVerifier {
        let jwks: JwkSet = serde_json::from_value(json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": TEST_KEY_X, "kid": "k1", "alg": "EdDSA", "use": "sig"
        }]}))
        .expect("test JWKS");
        JwtVerifier {
            cfg: JwtConfig {
                issuer: ISSUER.into(),
                audience: AUDIENCE.into(),
                jwks: JwksSource::File("unused.json".into()),
                identity_claim: "sub".into(),
            },
            keys: Mutex::new((jwks, None)),
            http: reqwest::Client::new(),
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    }

    /// A token for `alice` valid for five minutes, with `extra` claims merged in.
    fn token(extra: Value) -> String {
        let mut claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now(), "exp": now() + 300
        });
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        let key = EncodingKey::from_ed_der(TEST_KEY_DER);
        encode(&header, &claims, &key).expect("encode")
    }

    #[test]
    fn a_valid_token_names_its_identity() {
        assert_eq!(verifier().verify(&token(json!({}))), Ok("alice".into()));
    }

    #[test]
    fn nbf_in_the_future_beyond_the_leeway_is_refused() {
        let err = verifier()
            .verify(&token(json!({"nbf": now() + 3600})))
            .expect_err("a token not valid for an hour must be refused");
        assert!(
            err.contains("not valid yet") && err.contains("`nbf`"),
            "{err}"
        );
    }

    #[test]
    fn nbf_within_the_leeway_or_past_is_accepted() {
        let v = verifier();
        assert_eq!(
            v.verify(&token(json!({"nbf": now() + 10}))),
            Ok("alice".into())
        );
        assert_eq!(
            v.verify(&token(json!({"nbf": now() - 60}))),
            Ok("alice".into())
        );
    }

    #[test]
    fn a_malformed_nbf_is_refused() {
        let err = verifier()
            .verify(&token(json!({"nbf": "tomorrow"})))
            .expect_err("a non-numeric nbf must be refused");
        assert!(err.contains("nbf"), "{err}");
    }

    #[test]
    fn an_expired_token_is_refused_clearly() {
        let err = verifier()
            .verify(&token(json!({"exp": now() - 3600})))
            .expect_err("expired");
        assert!(err.contains("expired"), "{err}");
    }
}
