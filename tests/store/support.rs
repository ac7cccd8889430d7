//! A fresh store of either kind per test, the macro that runs one test body on both,
//! and short ways to bring instances and bindings into a given state.

use std::path::PathBuf;
use std::time::Duration;

use bindery::store::{
    BindingInsert, BindingState, InstanceState, NewBinding, NewInstance, NewOperation,
    OperationKind, OperationRecord, Outcome, SealedCredentials, Store, StoreOptions,
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

/// Generates, for each named `async fn name(t: TestStore)` of the calling module, a
/// `postgres::name` and a `sqlite::name` test running it on a fresh store of that kind.
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::TestStore::new(crate::support::Kind::Postgres).await)
                        .await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::support::TestStore::new(crate::support::Kind::Sqlite).await)
                        .await
                }
            )*
        }
    };
}
pub(crate) use store_tests;

/// Which database a test store lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Sqlite,
}

impl Kind {
    /// The other one (a copy's target).
    pub fn other(self) -> Self {
        match self {
            Self::Postgres => Self::Sqlite,
            Self::Sqlite => Self::Postgres,
        }
    }
}

/// The server every PostgreSQL test database lives on.
pub fn server_url() -> String {
    std::env::var("BINDERY_TEST_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A migrated store of its own, removed when the test ends (even by a panic).
pub struct TestStore {
    pub kind: Kind,
    pub store: Store,
    /// The store's URL.
    pub url: String,
    _place: Place,
}

/// Where a test store lives; dropping it removes the database or the directory.
pub enum Place {
    Postgres(String),
    Sqlite(PathBuf),
}

impl TestStore {
    /// A fresh, migrated store.
    pub async fn new(kind: Kind) -> Self {
        let t = Self::unmigrated(kind).await;
        t.store.migrate().await.expect("the test store migrates");
        t
    }

    /// A fresh store without its tables.
    pub async fn unmigrated(kind: Kind) -> Self {
        let (url, place) = Place::fresh(kind);
        let store = Store::open(&url, &StoreOptions::default())
            .await
            .expect("the test store opens");
        Self {
            kind,
            store,
            url,
            _place: place,
        }
    }
}

impl Place {
    /// A URL no store uses yet, and the place it names.
    pub fn fresh(kind: Kind) -> (String, Self) {
        let unique = Uuid::new_v4().simple();
        match kind {
            Kind::Postgres => {
                let database = format!("bindery_store_test_{unique}");
                (
                    format!("{}/{database}", server_url()),
                    Self::Postgres(database),
                )
            }
            Kind::Sqlite => {
                let dir = std::env::temp_dir().join(format!("bindery-store-test-{unique}"));
                (
                    format!("sqlite://{}", dir.join("state.db").display()),
                    Self::Sqlite(dir),
                )
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        match self {
            Self::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Self::Postgres(database) => {
                let database = database.clone();
                // Drop cannot await: a thread with a runtime of its own does it.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        if let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
                            .max_connections(1)
                            .connect(&format!("{}/postgres", server_url()))
                            .await
                        {
                            // The name is ours (a uuid), never input.
                            let _ = sqlx::query(&format!(
                                "drop database if exists \"{database}\" with (force)"
                            ))
                            .execute(&pool)
                            .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// The lease owner of operations run "inline" by these helpers.
pub const OWNER: &str = "test-owner";

/// Now, at the stores' precision (microseconds), so that a stored time reads back equal.
pub fn now_micros() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

/// An operation leased to [`OWNER`], as a synchronous request registers it.
pub fn inline<'a>(
    instance_id: &'a str,
    binding_id: Option<&'a str>,
    kind: OperationKind,
) -> NewOperation<'a> {
    NewOperation {
        operation_id: Uuid::new_v4(),
        instance_id,
        binding_id,
        kind,
        request: json!({}),
        deadline: Duration::from_secs(3600),
        inline_owner: Some(OWNER),
        lease: Duration::from_secs(30),
    }
}

/// An operation left to the worker (no lease).
pub fn queued<'a>(
    instance_id: &'a str,
    binding_id: Option<&'a str>,
    kind: OperationKind,
) -> NewOperation<'a> {
    NewOperation {
        inline_owner: None,
        ..inline(instance_id, binding_id, kind)
    }
}

/// The instance every helper provisions.
pub fn instance<'a>(instance_id: &'a str, parameters: &'a Value) -> NewInstance<'a> {
    NewInstance {
        instance_id,
        service_id: "svc-1",
        plan_id: "small",
        parameters,
        organization_guid: Some("org-1"),
        space_guid: Some("space-1"),
        context: None,
        dashboard_url: Some("https://dash.example/1"),
        maintenance_version: Some("1.0"),
        backend_kind: Some("test-kind"),
    }
}

/// The binding every helper binds.
pub fn binding<'a>(
    binding_id: &'a str,
    instance_id: &'a str,
    parameters: &'a Value,
) -> NewBinding<'a> {
    NewBinding {
        binding_id,
        instance_id,
        service_id: "svc-1",
        plan_id: "small",
        parameters,
        app_guid: Some("app-1"),
        route: None,
        bind_resource: None,
        context: None,
        expires_at: None,
        predecessor_binding_id: None,
    }
}

/// Sealed credentials under `label` (the bytes are opaque to the store).
pub fn sealed(label: &str, bytes: &[u8]) -> SealedCredentials {
    SealedCredentials {
        key_label: label.to_owned(),
        ciphertext: bytes.to_vec(),
    }
}

/// Reads an operation that must exist.
pub async fn operation(store: &Store, id: Uuid) -> OperationRecord {
    store
        .find_operation(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("operation {id} is missing"))
}

/// Finishes an operation leased to [`OWNER`] inline (its lease token is its id);
/// true when the outcome was recorded.
pub async fn finish(store: &Store, id: Uuid, outcome: Outcome) -> bool {
    let op = operation(store, id).await;
    store.finish_operation(&op, id, &outcome).await.unwrap()
}

pub fn succeeded() -> Outcome {
    Outcome::Succeeded {
        credentials: None,
        facts: None,
    }
}

pub fn failed(description: &str) -> Outcome {
    Outcome::Failed {
        description: description.to_owned(),
    }
}

/// An instance whose provision is running (leased to [`OWNER`]); its operation id.
pub async fn provisioning(store: &Store, instance_id: &str) -> Uuid {
    let parameters = json!({"size": 1});
    let op = inline(instance_id, None, OperationKind::Provision);
    assert!(
        store
            .insert_instance(&instance(instance_id, &parameters), &op)
            .await
            .unwrap()
    );
    op.operation_id
}

/// A provisioned, idle instance.
pub async fn ready(store: &Store, instance_id: &str) {
    let op = provisioning(store, instance_id).await;
    assert!(finish(store, op, succeeded()).await);
    let found = store.find_instance(instance_id).await.unwrap().unwrap();
    assert_eq!(found.state, InstanceState::Ready);
}

/// A binding whose bind is running (leased to [`OWNER`]); its operation id.
pub async fn binding_creating(store: &Store, instance_id: &str, binding_id: &str) -> Uuid {
    let parameters = json!({});
    let op = inline(instance_id, Some(binding_id), OperationKind::Bind);
    assert_eq!(
        store
            .insert_binding(&binding(binding_id, instance_id, &parameters), &op)
            .await
            .unwrap(),
        BindingInsert::Inserted
    );
    op.operation_id
}

/// A ready binding holding `credentials`.
pub async fn bound(
    store: &Store,
    instance_id: &str,
    binding_id: &str,
    credentials: Option<SealedCredentials>,
) {
    let op = binding_creating(store, instance_id, binding_id).await;
    assert!(
        finish(
            store,
            op,
            Outcome::Succeeded {
                credentials,
                facts: None
            }
        )
        .await
    );
    let found = store.find_binding(binding_id).await.unwrap().unwrap();
    assert_eq!(found.state, BindingState::Ready);
}

/// Deprovisions a ready instance: starts the deprovision and finishes it successfully;
/// its operation id.
pub async fn deprovisioned(store: &Store, instance_id: &str) -> Uuid {
    let op = begin_on_instance(
        store,
        instance_id,
        &[InstanceState::Ready],
        OperationKind::Deprovision,
        json!({}),
        None,
    )
    .await
    .unwrap();
    assert!(finish(store, op, succeeded()).await);
    op
}

/// Starts an operation on an instance; its id, or `None` when refused.
pub async fn begin_on_instance(
    store: &Store,
    instance_id: &str,
    allowed: &[InstanceState],
    kind: OperationKind,
    request: Value,
    new_state: Option<InstanceState>,
) -> Option<Uuid> {
    let op = NewOperation {
        request,
        ..inline(instance_id, None, kind)
    };
    store
        .begin_instance_operation(instance_id, allowed, &op, new_state)
        .await
        .unwrap()
        .then_some(op.operation_id)
}

/// Starts an operation on a binding; its id, or `None` when refused.
pub async fn begin_on_binding(
    store: &Store,
    instance_id: &str,
    binding_id: &str,
    allowed: &[BindingState],
    kind: OperationKind,
) -> Option<Uuid> {
    let op = inline(instance_id, Some(binding_id), kind);
    store
        .begin_binding_operation(binding_id, allowed, &op, None)
        .await
        .unwrap()
        .then_some(op.operation_id)
}

/// Every row of every table, read through the export the copy uses (whole rows).
#[derive(Debug, PartialEq)]
pub struct Everything {
    pub instances: Vec<bindery::store::InstanceRow>,
    pub bindings: Vec<bindery::store::BindingRow>,
    pub operations: Vec<bindery::store::OperationRow>,
    pub audit_events: Vec<bindery::store::AuditEvent>,
}

/// Instances and bindings sorted by id here, whatever the database's collation.
pub async fn everything(store: &Store) -> Everything {
    let mut instances = store.export_instances(None, 10_000).await.unwrap();
    instances.sort_by(|a, b| a.record.instance_id.cmp(&b.record.instance_id));
    let mut bindings = store.export_bindings(None, 10_000).await.unwrap();
    bindings.sort_by(|a, b| a.record.binding_id.cmp(&b.record.binding_id));
    let mut operations = store.export_operations(None, 10_000).await.unwrap();
    operations.sort_by_key(|o| o.record.operation_id);
    Everything {
        instances,
        bindings,
        operations,
        audit_events: store
            .export_audit_events(None, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, e)| e)
            .collect(),
    }
}

/// The whole stored row of one instance.
pub async fn instance_row(store: &Store, id: &str) -> bindery::store::InstanceRow {
    everything(store)
        .await
        .instances
        .into_iter()
        .find(|r| r.record.instance_id == id)
        .unwrap_or_else(|| panic!("instance {id} is missing"))
}

/// The whole stored row of one binding.
pub async fn binding_row(store: &Store, id: &str) -> bindery::store::BindingRow {
    everything(store)
        .await
        .bindings
        .into_iter()
        .find(|r| r.record.binding_id == id)
        .unwrap_or_else(|| panic!("binding {id} is missing"))
}

/// The whole stored row of one operation.
pub async fn operation_row(store: &Store, id: Uuid) -> bindery::store::OperationRow {
    everything(store)
        .await
        .operations
        .into_iter()
        .find(|r| r.record.operation_id == id)
        .unwrap_or_else(|| panic!("operation {id} is missing"))
}

/// `at` is within `tolerance` of `expected`.
pub fn near(at: DateTime<Utc>, expected: DateTime<Utc>, tolerance: Duration) -> bool {
    let tolerance = chrono::Duration::from_std(tolerance).unwrap();
    at >= expected - tolerance && at <= expected + tolerance
}
