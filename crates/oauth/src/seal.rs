//! Token sets at rest: sealed with ChaCha20-Poly1305 under toolgate's token key, bound to
//! their server and identity (the associated data), so a row copied to another identity,
//! edited, or read without the key is useless.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::OAuthError;

/// The 32-byte key tokens are sealed with.
#[derive(Clone)]
pub struct TokenKey(Key);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

impl TokenKey {
    /// Reads a key written as 64 hex digits (surrounding whitespace ignored), as
    /// `toolgate keygen`-style tools and `openssl rand -hex 32` write it.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let bytes = hex::decode(t).map_err(|_| {
            "the token key must be 64 hex digits (32 random bytes: `openssl rand -hex 32`)"
                .to_string()
        })?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "the token key must be 32 bytes (64 hex digits), got {} bytes",
                b.len()
            )
        })?;
        Ok(TokenKey(Key::from(bytes)))
    }

    /// Seals `plain` for `(server, identity)` with the 12-byte `nonce` (random, never reused
    /// with this key): the nonce, then the ciphertext and its tag.
    pub fn seal(&self, server: &str, identity: &str, nonce: [u8; 12], plain: &[u8]) -> Vec<u8> {
        let aad = associated(server, identity);
        let sealed = ChaCha20Poly1305::new(&self.0)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`TokenKey::seal`] sealed for `(server, identity)`.
    pub fn open(&self, server: &str, identity: &str, sealed: &[u8]) -> Result<Vec<u8>, OAuthError> {
        if sealed.len() < 12 + 16 {
            return Err(OAuthError::Sealed);
        }
        let (nonce, body) = sealed.split_at(12);
        let aad = associated(server, identity);
        ChaCha20Poly1305::new(&self.0)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| OAuthError::Sealed)
    }
}

fn associated(server: &str, identity: &str) -> Vec<u8> {
    // Lengths first: no two (server, identity) pairs give the same bytes.
    let mut aad = Vec::with_capacity(16 + server.len() + identity.len());
    aad.extend_from_slice(b"toolgate-oauth-v1");
    aad.extend_from_slice(&(server.len() as u64).to_be_bytes());
    aad.extend_from_slice(server.as_bytes());
    aad.extend_from_slice(&(identity.len() as u64).to_be_bytes());
    aad.extend_from_slice(identity.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_set_opens_only_with_its_key_server_and_identity() {
        let key = TokenKey::from_text(&"ab".repeat(32)).unwrap();
        let sealed = key.seal("gh", "alice", [1; 12], b"{\"access_token\":\"t\"}");
        assert!(!String::from_utf8_lossy(&sealed).contains("access_token"));
        assert_eq!(
            key.open("gh", "alice", &sealed).unwrap(),
            b"{\"access_token\":\"t\"}"
        );
        assert_eq!(key.open("gh", "bob", &sealed), Err(OAuthError::Sealed));
        assert_eq!(key.open("gh2", "alice", &sealed), Err(OAuthError::Sealed));
        let other = TokenKey::from_text(&"cd".repeat(32)).unwrap();
        assert_eq!(other.open("gh", "alice", &sealed), Err(OAuthError::Sealed));
        let mut edited = sealed.clone();
        let last = edited.len() - 1;
        edited[last] ^= 1;
        assert_eq!(key.open("gh", "alice", &edited), Err(OAuthError::Sealed));
        assert_eq!(
            key.open("gh", "alice", &sealed[..10]),
            Err(OAuthError::Sealed)
        );
        assert!(TokenKey::from_text("abc").is_err());
        assert!(TokenKey::from_text(&"ab".repeat(16))
            .unwrap_err()
            .contains("16 bytes"));
    }
}
