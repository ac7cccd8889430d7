//! Encryption keys over stored state: the start-up check that every key in use is
//! configured, and the rotation that re-encrypts everything under the primary key.

use anyhow::bail;

use crate::crypto::Keyring;
use crate::store::Store;

/// What a rotation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// Credentials re-encrypted under the primary key.
    pub resealed: u64,
    /// Credentials that could not be opened (binding id and reason, no secret).
    pub failed: Vec<(String, String)>,
}

/// Fails closed when stored credentials were sealed with a key that is not
/// configured: starting anyway would answer binds and fetches with garbage or errors.
pub async fn check_keys_in_use(store: &Store, keyring: &Keyring) -> anyhow::Result<()> {
    let missing: Vec<String> = store
        .credential_key_labels()
        .await?
        .into_iter()
        .filter(|(label, _)| !keyring.has(label))
        .map(|(label, count)| format!("`{label}` ({count} binding(s))"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "stored credentials were encrypted with key(s) {} that BINDERY_ENCRYPTION_KEYS does not contain; add them back (they may follow the primary key) and run `bindery rotate-keys`",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Re-encrypts every stored credential that is not under the primary key.
pub async fn rotate(store: &Store, keyring: &Keyring) -> anyhow::Result<RotationReport> {
    let mut report = RotationReport::default();
    let mut after = String::new();
    loop {
        let batch = store
            .credentials_not_sealed_with(keyring.primary_label(), &after, 500)
            .await?;
        let Some((last, _)) = batch.last() else { break };
        after = last.clone();
        for (binding_id, sealed) in batch {
            match keyring.open(&sealed, &binding_id) {
                Ok(plain) => {
                    let resealed = keyring.seal(&plain, &binding_id);
                    if store
                        .reseal_credentials(&binding_id, &sealed.key_label, &resealed)
                        .await?
                    {
                        report.resealed += 1;
                    }
                }
                Err(e) => report.failed.push((binding_id, e.to_string())),
            }
        }
    }
    Ok(report)
}
