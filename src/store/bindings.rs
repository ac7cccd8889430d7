//! The store's service binding methods: the logic and SQL both databases share, and
//! what each says in its own SQL forwarded to it.

use super::row::BINDING_COLUMNS;
use super::{
    BindingInsert, BindingRecord, BindingRow, BindingState, Claim, NewBinding, NewOperation,
    SealedCredentials, Store,
};

impl Store {
    /// Inserts the binding and its bind operation together, while its instance is
    /// ready and idle; a deprovision cannot start in between. A tombstone, or a failed
    /// binding of the same instance that nothing runs on, is replaced.
    pub async fn insert_binding(
        &self,
        new: &NewBinding<'_>,
        operation: &NewOperation<'_>,
    ) -> Result<BindingInsert, sqlx::Error> {
        dispatch!(self, s => s.insert_binding(new, operation).await)
    }

    /// Reads a binding, tombstones included.
    pub async fn find_binding(
        &self,
        binding_id: &str,
    ) -> Result<Option<BindingRecord>, sqlx::Error> {
        let statement =
            format!("select {BINDING_COLUMNS} from service_binding where binding_id = $1");
        let row: Option<BindingRow> = self.row_by(&statement, binding_id).await?;
        Ok(row.map(Into::into))
    }

    /// Makes `operation` the binding's active operation if none is running and the
    /// binding is in one of `allowed` states. `false` when something else got there first.
    pub async fn begin_binding_operation(
        &self,
        binding_id: &str,
        allowed: &[BindingState],
        operation: &NewOperation<'_>,
        new_state: Option<BindingState>,
    ) -> Result<bool, sqlx::Error> {
        let claim = Claim {
            allowed: allowed.iter().map(|s| s.as_str()).collect(),
            operation,
            new_state: new_state.map(BindingState::as_str),
        };
        dispatch!(self, s => s.begin_binding_operation(binding_id, claim).await)
    }

    /// Labels of the keys that sealed stored credentials, each with its count.
    pub async fn credential_key_labels(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let statement = "select credentials_key, count(*) from service_binding \
             where credentials_key is not null group by credentials_key order by credentials_key";
        dispatch!(self, s => sqlx::query_as(statement).fetch_all(s.reader()).await)
    }

    /// Up to `limit` sealed credentials not sealed with `primary`, after `after`
    /// (binding ids in order, so a rotation pages through them).
    pub async fn credentials_not_sealed_with(
        &self,
        primary: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, SealedCredentials)>, sqlx::Error> {
        let statement = "select binding_id, credentials, credentials_key from service_binding \
             where credentials_key is not null and credentials_key <> $1 and binding_id > $2 \
             order by binding_id limit $3";
        let rows: Vec<(String, Vec<u8>, String)> = dispatch!(self, s => sqlx::query_as(statement)
            .bind(primary)
            .bind(after)
            .bind(limit)
            .fetch_all(s.reader())
            .await?);
        Ok(rows
            .into_iter()
            .map(|(id, ciphertext, key_label)| {
                let sealed = SealedCredentials {
                    key_label,
                    ciphertext,
                };
                (id, sealed)
            })
            .collect())
    }

    /// Replaces sealed credentials, only if they are still those sealed by `old_label`
    /// (a concurrent rebind or rotation wins).
    pub async fn reseal_credentials(
        &self,
        binding_id: &str,
        old_label: &str,
        sealed: &SealedCredentials,
    ) -> Result<bool, sqlx::Error> {
        dispatch!(self, s => s.reseal_credentials(binding_id, old_label, sealed).await)
    }
}
