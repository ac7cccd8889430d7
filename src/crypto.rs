//! Credentials at rest: AES-256-GCM with labelled keys.
//!
//! Each ciphertext is stored with the label of the key that sealed it, and the binding
//! id is the associated data, so a ciphertext copied to another row does not open.
//! New data is sealed with the primary key; any configured key can open. A label with
//! no configured key fails closed with a message that names the label.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use sha2::Sha256;

use crate::store::SealedCredentials;

const NONCE_LEN: usize = 12;

/// One configured key.
#[derive(Clone)]
pub struct EncryptionKey {
    /// Stored beside each ciphertext.
    pub label: String,
    cipher: Aes256Gcm,
    /// A second key derived from the same bytes for [`Keyring::derive_password`], so
    /// that the encryption key itself is used for nothing else.
    derivation: [u8; 32],
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey({}, <redacted>)", self.label)
    }
}

impl EncryptionKey {
    /// A key from its label and 32 raw bytes.
    pub fn from_bytes(label: &str, bytes: &[u8]) -> Result<Self, CryptoError> {
        if label.is_empty()
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(CryptoError::BadKey(format!(
                "key label `{label}` must be non-empty letters, digits, - or _"
            )));
        }
        let cipher = Aes256Gcm::new_from_slice(bytes).map_err(|_| {
            CryptoError::BadKey(format!(
                "key `{label}` must be exactly 32 bytes (base64 of 32 random bytes)"
            ))
        })?;
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(bytes).expect("HMAC takes any key length");
        mac.update(b"bindery password derivation key v1");
        Ok(Self {
            label: label.to_owned(),
            cipher,
            derivation: mac.finalize().into_bytes().into(),
        })
    }

    /// A key from its label and base64 text.
    pub fn from_base64(label: &str, encoded: &str) -> Result<Self, CryptoError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| CryptoError::BadKey(format!("key `{label}` is not valid base64")))?;
        Self::from_bytes(label, &bytes)
    }
}

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A configured key is unusable.
    #[error("{0}")]
    BadKey(String),
    /// Data was sealed with a key that is not configured any more.
    #[error(
        "credentials were encrypted with key `{0}`, which is not configured; add it back to BINDERY_ENCRYPTION_KEYS"
    )]
    UnknownKey(String),
    /// The ciphertext does not open with its key: corrupted, or moved between rows.
    #[error("stored credentials do not decrypt with key `{0}` (corrupted or tampered)")]
    Corrupt(String),
}

/// The keyring: a primary key for sealing, every key for opening.
#[derive(Clone)]
pub struct Keyring {
    primary: String,
    keys: HashMap<String, EncryptionKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut labels: Vec<&String> = self.keys.keys().collect();
        labels.sort();
        write!(f, "Keyring(primary {}, keys {labels:?})", self.primary)
    }
}

impl Keyring {
    /// A keyring whose first key is the primary.
    pub fn new(keys: Vec<EncryptionKey>) -> Result<Self, CryptoError> {
        let primary = keys
            .first()
            .ok_or_else(|| {
                CryptoError::BadKey("at least one encryption key is required".to_owned())
            })?
            .label
            .clone();
        let mut map = HashMap::new();
        for key in keys {
            if map.insert(key.label.clone(), key.clone()).is_some() {
                return Err(CryptoError::BadKey(format!(
                    "key label `{}` is configured twice",
                    key.label
                )));
            }
        }
        Ok(Self { primary, keys: map })
    }

    /// Parses `label:base64,label:base64` (the first is primary).
    pub fn parse(spec: &str) -> Result<Self, CryptoError> {
        let keys = spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|entry| {
                let (label, encoded) = entry.split_once(':').ok_or_else(|| {
                    CryptoError::BadKey(
                        "each encryption key must be written label:base64".to_owned(),
                    )
                })?;
                EncryptionKey::from_base64(label.trim(), encoded)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    /// True when a key with `label` is configured.
    pub fn has(&self, label: &str) -> bool {
        self.keys.contains_key(label)
    }

    /// The label new data is sealed with.
    pub fn primary_label(&self) -> &str {
        &self.primary
    }

    /// A password of 32 alphanumerics derived from the primary key and `context` (an
    /// operation id): the same for every run of one operation, so that a superseded
    /// run whose command reaches a managed server late sets the password the current
    /// run stored, never one nobody knows. Unpredictable without the key, like the
    /// sealed credentials themselves.
    pub fn derive_password(&self, context: &str) -> SecretString {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        const LEN: usize = 32;
        let key = &self.keys[&self.primary];
        let mut password = String::with_capacity(LEN);
        let mut block = 0u32;
        while password.len() < LEN {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.derivation)
                .expect("HMAC takes any key length");
            mac.update(context.as_bytes());
            mac.update(&block.to_be_bytes());
            // Rejection sampling: 248 = 4 * 62, so every character is equally likely.
            password.extend(
                mac.finalize()
                    .into_bytes()
                    .iter()
                    .filter(|&&b| b < 248)
                    .map(|&b| char::from(ALPHABET[usize::from(b % 62)]))
                    .take(LEN - password.len()),
            );
            block += 1;
        }
        SecretString::from(password)
    }

    /// Seals `plaintext` under the primary key, bound to `context` (the binding id).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> SealedCredentials {
        let key = &self.keys[&self.primary];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random source works");
        let ciphertext = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        SealedCredentials {
            key_label: key.label.clone(),
            ciphertext: out,
        }
    }

    /// Opens what `seal` produced for the same `context`.
    pub fn open(&self, sealed: &SealedCredentials, context: &str) -> Result<Vec<u8>, CryptoError> {
        let key = self
            .keys
            .get(&sealed.key_label)
            .ok_or_else(|| CryptoError::UnknownKey(sealed.key_label.clone()))?;
        if sealed.ciphertext.len() < NONCE_LEN {
            return Err(CryptoError::Corrupt(sealed.key_label.clone()));
        }
        let (nonce, ciphertext) = sealed.ciphertext.split_at(NONCE_LEN);
        key.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Corrupt(sealed.key_label.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(spec: &str) -> Keyring {
        Keyring::parse(spec).expect("valid keyring")
    }

    const A: &str = "a:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const B: &str = "b:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    #[test]
    fn a_derived_password_is_stable_per_context_and_key_and_alphanumeric() {
        use secrecy::ExposeSecret as _;
        let derive = |spec: &str, context: &str| {
            ring(spec)
                .derive_password(context)
                .expose_secret()
                .to_owned()
        };
        let first = derive(A, "op-1");
        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(
            first,
            derive(A, "op-1"),
            "every run of one operation agrees"
        );
        assert_ne!(first, derive(A, "op-2"));
        assert_ne!(
            first,
            derive(B, "op-1"),
            "another key derives another password"
        );
    }

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let keys = ring(A);
        let sealed = keys.seal(b"{\"password\":\"hunter2\"}", "binding-1");
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            keys.open(&sealed, "binding-1").unwrap(),
            b"{\"password\":\"hunter2\"}"
        );
    }

    #[test]
    fn a_ciphertext_moved_to_another_binding_does_not_open() {
        let keys = ring(A);
        let sealed = keys.seal(b"secret", "binding-1");
        assert!(matches!(
            keys.open(&sealed, "binding-2"),
            Err(CryptoError::Corrupt(_))
        ));
    }

    #[test]
    fn old_keys_still_open_after_a_new_primary() {
        let sealed = ring(A).seal(b"secret", "x");
        let rotated = ring(&format!("{B},{A}"));
        assert_eq!(rotated.primary_label(), "b");
        assert_eq!(rotated.open(&sealed, "x").unwrap(), b"secret");
    }

    #[test]
    fn a_missing_key_fails_closed_naming_the_label() {
        let sealed = ring(A).seal(b"secret", "x");
        let err = ring(B).open(&sealed, "x").unwrap_err();
        assert!(err.to_string().contains("`a`"), "{err}");
    }

    #[test]
    fn rejects_short_keys_and_duplicate_labels() {
        assert!(Keyring::parse("a:AAAA").is_err());
        assert!(Keyring::parse(&format!("{A},{A}")).is_err());
        assert!(Keyring::parse("").is_err());
    }
}
