//! The `postgres` backend: databases as a service on a shared PostgreSQL server, one
//! database per service instance and one login role per binding.
//!
//! Everything an instance owns is named after a hash of its id (see
//! [`InstanceNames`]): the database `<prefix>_<h>`, the NOLOGIN group roles
//! `<prefix>_<h>_owner` and `<prefix>_<h>_reader`, and one login role
//! `<prefix>_<h>_b<h(binding)>` per binding. Because names are derived, never stored,
//! every step can be rerun after a crash and finds what the previous run left.
//!
//! Read-write bindings are members of the owner group and start every session with
//! `SET ROLE <owner>`, so whatever an application creates belongs to the group and is
//! usable by every other binding, and dropping one binding never takes data with it.
//!
//! Passwords never travel to the server: bindery computes the SCRAM-SHA-256 verifier
//! itself and sends only that, with statement logging switched off.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};

use super::common::{self, ServerConfig, SharedServer};
use super::sql_ident::{Ident, InstanceNames, is_valid_extension_name, quote_literal};
use super::{
    BackendError, BindingSpec, Credentials, Facts, InstanceSpec, ServiceBackend, UpdateSpec,
};

pub use super::common::DEFAULT_NAME_PREFIX;

/// How the server is named in errors.
const SERVER: &str = "PostgreSQL";

/// Connection limit of an instance database when the plan does not set one.
pub const DEFAULT_CONNECTION_LIMIT: i64 = 20;

/// Largest connection limit a plan or an instance may set.
pub const MAX_CONNECTION_LIMIT: i64 = 10_000;

/// How long the admin pool waits for a connection before calling the server unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long connecting to an instance database (as admin) may take.
const INSTANCE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// PBKDF2 iterations of generated SCRAM verifiers (PostgreSQL's default).
const SCRAM_ITERATIONS: u32 = 4096;

/// How often a statement is tried when it collides with a concurrent run of itself.
const CONCURRENCY_RETRIES: u64 = 5;

const PLAN_KEYS: [&str; 4] = [
    "connection_limit",
    "max_connection_limit",
    "extensions",
    "allowed_extensions",
];

/// How to reach the shared PostgreSQL server and how to name what is created on it.
/// The admin URL (`postgres://` or `postgresql://`, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`) names a superuser or a role with
/// CREATEDB and CREATEROLE.
pub type PostgresBackendConfig = ServerConfig;

/// The `postgres` backend. Holds a small lazy pool of admin connections; instance
/// databases are reached through short-lived single connections.
pub struct PostgresBackend {
    pool: PgPool,
    /// Kept to connect to instance databases with the same credentials and TLS settings.
    admin_options: PgConnectOptions,
    server: SharedServer,
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.server.debug_as("PostgresBackend", f)
    }
}

impl PostgresBackend {
    /// Checks the configuration and prepares a lazy admin pool. Does not connect:
    /// bindery starts even while the server is down.
    pub fn new(config: PostgresBackendConfig) -> anyhow::Result<Self> {
        let (admin_options, prefix) =
            config.sqlx_options::<PgConnectOptions>(SERVER, &["postgres", "postgresql"])?;
        let admin_options = admin_options.application_name("bindery");
        let admin_host = Some(admin_options.get_host()).filter(|h| !h.starts_with('/'));
        let endpoint = config.endpoint(SERVER, admin_host, admin_options.get_port())?;

        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(admin_options.clone());
        Ok(Self {
            pool,
            admin_options,
            server: SharedServer { endpoint, prefix },
        })
    }

    fn names(&self, instance_id: &str) -> InstanceNames {
        InstanceNames::new(self.server.prefix.as_str(), instance_id)
            .expect("the prefix was validated by PostgresBackend::new")
    }

    /// Runs DDL on the admin pool (see [`run`]).
    async fn exec(&self, sql: &str, what: &str) -> Result<(), BackendError> {
        run_on_pool(&self.pool, sql)
            .await
            .map_err(|e| classify(e, what))
    }

    /// Like [`Self::exec`] for a `CREATE` whose object a concurrent run may have just
    /// created: "already exists" counts as success.
    async fn exec_create(&self, sql: &str, what: &str) -> Result<(), BackendError> {
        match run_on_pool(&self.pool, sql).await {
            Ok(()) => Ok(()),
            Err(e) if is_already_there(&e) => Ok(()),
            Err(e) => Err(classify(e, what)),
        }
    }

    /// Runs `query`, a `SELECT EXISTS` of one object named `$1`.
    async fn exists(&self, query: &str, name: &Ident, what: &str) -> Result<bool, BackendError> {
        sqlx::query_scalar(query)
            .bind(name.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| classify(e, what))
    }

    async fn role_exists(&self, role: &Ident) -> Result<bool, BackendError> {
        let query = "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)";
        self.exists(query, role, "look up a role").await
    }

    /// Whether `role` is a direct member of `group`.
    async fn is_member(&self, role: &Ident, group: &Ident) -> Result<bool, BackendError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_auth_members m
                 JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid
                 WHERE r.rolname = $1 AND g.rolname = $2)",
        )
        .bind(role.as_str())
        .bind(group.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| classify(e, "look up a role's memberships"))
    }

    async fn database_exists(&self, database: &Ident) -> Result<bool, BackendError> {
        let query = "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)";
        self.exists(query, database, "look up a database").await
    }

    /// A non-superuser admin (CREATEDB + CREATEROLE) must be a member of a role to
    /// create a database it owns, change its default privileges or reassign its
    /// objects; a superuser needs nothing.
    async fn ensure_admin_member_of(&self, role: &Ident) -> Result<(), BackendError> {
        let superuser: bool =
            sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| classify(e, "look up the admin role"))?;
        if superuser {
            return Ok(());
        }
        let member: bool = sqlx::query_scalar("SELECT pg_has_role(current_user, $1, 'MEMBER')")
            .bind(role.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| classify(e, "look up the admin role's memberships"))?;
        if member {
            return Ok(());
        }
        self.exec(
            &format!("GRANT {role} TO CURRENT_USER"),
            &format!("grant role {} to the admin role", role.as_str()),
        )
        .await
    }

    async fn ensure_group_role(&self, role: &Ident) -> Result<(), BackendError> {
        if !self.role_exists(role).await? {
            self.exec_create(
                &format!("CREATE ROLE {role} NOLOGIN"),
                &format!("create role {}", role.as_str()),
            )
            .await?;
        }
        Ok(())
    }

    /// Connects as admin to an instance database; `None` if it does not exist.
    async fn connect_to(&self, database: &Ident) -> Result<Option<PgConnection>, BackendError> {
        let what = format!("connect to database {}", database.as_str());
        let options = self.admin_options.clone().database(database.as_str());
        match tokio::time::timeout(
            INSTANCE_CONNECT_TIMEOUT,
            PgConnection::connect_with(&options),
        )
        .await
        {
            Err(_) => {
                tracing::warn!(database = database.as_str(), "connecting timed out");
                Err(unreachable(&what))
            }
            Ok(Err(e)) if sqlstate(&e).as_deref() == Some("3D000") => Ok(None),
            Ok(Err(e)) => Err(classify(e, &what)),
            Ok(Ok(conn)) => Ok(Some(conn)),
        }
    }

    /// Makes the instance look like `desired`: group roles, database settings and
    /// grants, extensions and schema privileges. Creates the database only if
    /// `create_database`; otherwise a missing database is an error.
    async fn converge(
        &self,
        names: &InstanceNames,
        desired: &Desired,
        create_database: bool,
    ) -> Result<(), BackendError> {
        let InstanceNames {
            database,
            owner,
            reader,
            ..
        } = names;
        let exists = self.database_exists(database).await?;
        if !exists && !create_database {
            // Checked before anything is created: a refused update leaves no trace.
            return Err(missing_database());
        }
        self.ensure_group_role(owner).await?;
        self.ensure_group_role(reader).await?;
        self.ensure_admin_member_of(owner).await?;

        if !exists {
            // CREATE DATABASE cannot run in a transaction block: a statement of its own.
            self.exec_create(
                &format!("CREATE DATABASE {database} OWNER {owner}"),
                "create the database",
            )
            .await?;
        }
        self.exec(
            &format!(
                "ALTER DATABASE {database} OWNER TO {owner};
                 ALTER DATABASE {database} CONNECTION LIMIT {limit};
                 REVOKE ALL ON DATABASE {database} FROM PUBLIC;
                 GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {owner}, {reader};",
                limit = desired.connection_limit
            ),
            "configure the database",
        )
        .await?;

        let Some(mut conn) = self.connect_to(database).await? else {
            // Dropped between the check and the connection: a concurrent deprovision.
            return Err(missing_database());
        };
        let result = configure_inside(&mut conn, names, desired).await;
        close(conn).await;
        result
    }

    /// Terminates every session of `role` (they would otherwise outlive the role).
    async fn terminate_sessions(&self, role: &Ident) -> Result<(), BackendError> {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE usename::text = $1 AND pid <> pg_backend_pid()",
        )
        .bind(role.as_str())
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(|e| classify(e, "end the sessions of a binding"))
    }

    fn credentials(&self, database: &Ident, role: &Ident, password: &SecretString) -> Credentials {
        common::database_credentials(
            ["postgresql", "postgresql", "postgresql"],
            &self.server.endpoint,
            database.as_str(),
            role.as_str(),
            password,
        )
    }

    /// Provisions (`create_database`) or updates an instance to what its plan and
    /// parameters ask for.
    async fn apply(
        &self,
        instance: &InstanceSpec<'_>,
        create_database: bool,
    ) -> Result<InstanceNames, BackendError> {
        let plan = plan_settings_or_error(instance.plan_settings)?;
        let desired = desired_state(&plan, instance.parameters)?;
        let names = self.names(instance.instance_id);
        self.converge(&names, &desired, create_database).await?;
        Ok(names)
    }
}

/// Steps run inside the instance database, each safe to rerun.
async fn configure_inside(
    conn: &mut PgConnection,
    names: &InstanceNames,
    desired: &Desired,
) -> Result<(), BackendError> {
    let InstanceNames { owner, reader, .. } = names;
    for extension in &desired.extensions {
        let ident = Ident::new(extension)
            .map_err(|_| BackendError::Failed(format!("{extension:?} is not an extension name")))?;
        let what = format!("create extension {extension}");
        match run(conn, &format!("CREATE EXTENSION IF NOT EXISTS {ident}")).await {
            Ok(()) => {}
            // A concurrent run created it between the check and the insert.
            Err(e) if is_already_there(&e) => {}
            Err(e) => return Err(classify(e, &what)),
        }
    }

    // An application (which owns the schema) may have dropped `public`: nothing to fix.
    let has_public: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public')")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| classify(e, "look up schema public"))?;
    if has_public {
        run(
            conn,
            &format!(
                "ALTER SCHEMA public OWNER TO {owner};
             GRANT USAGE ON SCHEMA public TO {reader};
             ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
                 GRANT SELECT ON TABLES TO {reader};
             ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
                 GRANT SELECT ON SEQUENCES TO {reader};"
            ),
        )
        .await
        .map_err(|e| classify(e, "set up the privileges of schema public"))?;
    }
    Ok(())
}

/// Runs `sql` (possibly several statements, which then commit together) with the
/// simple query protocol: DDL takes no parameters, and one-off statements should not
/// fill the prepared-statement cache.
///
/// Two runs of the same step at once (a worker retrying while the first run is still
/// going) can collide on the same catalog row, which PostgreSQL reports as "tuple
/// concurrently updated" and rolls back; both want the same end state, so the loser
/// simply runs again.
async fn run(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    let mut attempt = 1;
    loop {
        match conn.execute(sql).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt < CONCURRENCY_RETRIES && is_concurrency_conflict(&e) => {
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// [`run`] on a pooled connection.
async fn run_on_pool(pool: &PgPool, sql: &str) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    run(&mut conn, sql).await
}

async fn close(conn: PgConnection) {
    if let Err(error) = conn.close().await {
        tracing::debug!(%error, "closing an instance database connection failed");
    }
}

#[async_trait]
impl ServiceBackend for PostgresBackend {
    fn check_plan_settings(&self, settings: &Value) -> Vec<String> {
        check_plan_settings(settings)
    }

    fn parameter_bounds(&self, settings: &Value) -> Vec<super::ParameterBound> {
        parameter_bounds(settings)
    }

    async fn provision(&self, instance: &InstanceSpec<'_>) -> Result<Facts, BackendError> {
        let names = self.apply(instance, true).await?;
        tracing::info!(database = names.database.as_str(), "provisioned");
        Ok(None)
    }

    async fn update(&self, change: &UpdateSpec<'_>) -> Result<Facts, BackendError> {
        // Extensions are only ever added: dropping one would drop the data using it.
        let names = self.apply(&change.target, false).await?;
        tracing::info!(database = names.database.as_str(), "updated");
        Ok(None)
    }

    async fn deprovision(&self, instance: &InstanceSpec<'_>) -> Result<(), BackendError> {
        let names = self.names(instance.instance_id);
        let database = &names.database;
        // FORCE terminates live connections; IF EXISTS makes reruns and orphan
        // mitigation of never-created instances succeed.
        self.exec(
            &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
            "drop the database",
        )
        .await?;

        let mut roles: Vec<String> = sqlx::query_scalar(
            "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname::text, $1)",
        )
        .bind(&names.role_prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify(e, "list the roles of the instance"))?;
        // Binding roles first, group roles last.
        roles.sort_by_key(|role| (names.is_group_role(role), role.clone()));
        for role in roles {
            let Ok(role) = Ident::new(&role) else {
                // Not a name bindery generates: someone else's role, leave it alone.
                tracing::warn!(role, "not dropping a role bindery did not create");
                continue;
            };
            if !names.is_group_role(role.as_str()) {
                // Sessions in other databases (e.g. `postgres`) would survive the role.
                self.terminate_sessions(&role).await?;
            }
            self.exec(
                &format!("DROP ROLE IF EXISTS {role}"),
                &format!("drop role {}", role.as_str()),
            )
            .await?;
        }
        tracing::info!(database = database.as_str(), "deprovisioned");
        Ok(())
    }

    async fn bind(&self, binding: &BindingSpec<'_>) -> Result<Credentials, BackendError> {
        let read_only = common::only_read_only_parameter(binding.parameters)?;
        let names = self.names(binding.instance.instance_id);
        let role = names.binding_role(binding.binding_id);
        let InstanceNames {
            database,
            owner,
            reader,
            ..
        } = &names;
        if !self.database_exists(database).await? {
            return Err(missing_database());
        }
        if !self.role_exists(&role).await? {
            self.exec_create(
                &format!("CREATE ROLE {role} LOGIN"),
                "create the binding's role",
            )
            .await?;
        }

        let password = binding.password;
        let salt: [u8; 16] = common::random_salt()?;
        let verifier = scram_sha256_verifier(password.expose_secret(), &salt, SCRAM_ITERATIONS);
        let verifier =
            quote_literal(&verifier).expect("a SCRAM verifier has no backslash or control");
        // Rerun with other parameters converges too: the other group is left. Only
        // what is missing is granted and only what is held is revoked: PostgreSQL
        // answers a REVOKE of a role never granted with a WARNING (and a repeated GRANT
        // with a NOTICE), which sqlx logs at the same level, and operators alert on
        // WARN. A concurrent run changing the same membership is harmless either way.
        let (join, leave) = if read_only {
            (reader, owner)
        } else {
            (owner, reader)
        };
        let mut membership = String::new();
        if !self.is_member(&role, join).await? {
            membership.push_str(&format!("GRANT {join} TO {role};"));
        }
        if self.is_member(&role, leave).await? {
            membership.push_str(&format!("REVOKE {leave} FROM {role};"));
        }
        membership.push_str(&if read_only {
            format!("ALTER ROLE {role} RESET role;")
        } else {
            // Sessions run as the owner group, so everything created is shared by the
            // instance's bindings and survives this binding's role.
            format!("ALTER ROLE {role} SET role = {owner};")
        });
        // One simple-protocol message: the statements commit together or not at all.
        // The connection limit of the role itself stays -1: the database's applies.
        self.exec(
            &format!(
                "ALTER ROLE {role} WITH LOGIN INHERIT CONNECTION LIMIT -1 PASSWORD {verifier};
                 {membership}"
            ),
            "set up the binding's role",
        )
        .await?;
        tracing::info!(
            database = database.as_str(),
            role = role.as_str(),
            read_only,
            "bound"
        );
        Ok(self.credentials(database, &role, password))
    }

    async fn unbind(&self, binding: &BindingSpec<'_>) -> Result<(), BackendError> {
        let names = self.names(binding.instance.instance_id);
        let role = names.binding_role(binding.binding_id);
        if !self.role_exists(&role).await? {
            return Ok(());
        }
        // Refuse new sessions first, so that none starts between termination and drop.
        self.exec(
            &format!("ALTER ROLE {role} NOLOGIN"),
            "disable the binding's role",
        )
        .await?;
        self.terminate_sessions(&role).await?;
        self.ensure_admin_member_of(&role).await?;

        if let Some(mut conn) = self.connect_to(&names.database).await? {
            // Objects the role owns (created after `SET ROLE NONE`) go to the owner group,
            // so other bindings keep their data; then its privileges go away.
            let owner_exists = self.role_exists(&names.owner).await?;
            let owner = &names.owner;
            let sql = if owner_exists {
                format!("REASSIGN OWNED BY {role} TO {owner}; DROP OWNED BY {role};")
            } else {
                format!("DROP OWNED BY {role};")
            };
            let result = run(&mut conn, &sql)
                .await
                .map_err(|e| classify(e, "hand the binding's objects over to the instance"));
            close(conn).await;
            result?;
        }
        self.exec(
            &format!("DROP ROLE IF EXISTS {role}"),
            "drop the binding's role",
        )
        .await?;
        tracing::info!(role = role.as_str(), "unbound");
        Ok(())
    }
}

/// A plan's `backend.settings`, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlanSettings {
    connection_limit: i64,
    /// The largest limit an instance may ask for; `None`: anything, even unlimited.
    max_connection_limit: Option<i64>,
    extensions: Vec<String>,
    allowed_extensions: Vec<String>,
}

/// What an instance should look like after provision or update.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Desired {
    connection_limit: i64,
    extensions: Vec<String>,
}

/// Problems with a plan's `backend.settings` for the `postgres` kind, one message each;
/// empty when the settings are usable.
///
/// Settings (all optional): `connection_limit` (integer -1..=10000, default 20, -1 =
/// unlimited), `max_connection_limit` (integer 1..=10000, the most an instance
/// parameter may ask for, default `connection_limit`), `extensions` (extensions
/// created in every instance's database) and `allowed_extensions` (extensions an
/// instance may request with its `extensions` parameter).
pub fn check_plan_settings(settings: &Value) -> Vec<String> {
    common::problems(parse_plan_settings(settings))
}

/// What a plan's settings allow of instance parameters: `connection_limit` from 1 to
/// the plan's `max_connection_limit`, extensions among the plan's, nothing else.
/// Empty when the settings are invalid (`check_plan_settings` reports those).
pub fn parameter_bounds(settings: &Value) -> Vec<super::ParameterBound> {
    use super::ParameterBound;
    let Ok(plan) = parse_plan_settings(settings) else {
        return Vec::new();
    };
    let mut bounds = vec![ParameterBound::Only(vec![
        "connection_limit".to_owned(),
        "extensions".to_owned(),
    ])];
    if let Some(maximum) = plan.max_connection_limit {
        bounds.push(ParameterBound::Integer {
            name: "connection_limit".to_owned(),
            minimum: 1,
            maximum,
        });
    }
    let mut allowed: Vec<String> = plan
        .allowed_extensions
        .iter()
        .chain(&plan.extensions)
        .cloned()
        .collect();
    allowed.sort();
    allowed.dedup();
    bounds.push(ParameterBound::ItemsOneOf {
        name: "extensions".to_owned(),
        allowed,
    });
    bounds
}

fn plan_settings_or_error(settings: &Value) -> Result<PlanSettings, BackendError> {
    parse_plan_settings(settings).map_err(|problems| {
        common::invalid_plan_settings("The plan's PostgreSQL settings are not valid", problems)
    })
}

fn parse_plan_settings(settings: &Value) -> Result<PlanSettings, Vec<String>> {
    let map = common::settings_map(settings, "the postgres settings must be an object")?;
    let mut problems = common::unknown_keys(map, &PLAN_KEYS, "postgres setting");
    let mut integer = |key: &str, min: i64, max: i64| -> Option<i64> {
        let value = map.get(key)?;
        match value.as_i64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                problems.push(format!(
                    "{key} must be an integer from {min} to {max}, not {value}"
                ));
                None
            }
        }
    };
    let connection_limit = integer("connection_limit", -1, MAX_CONNECTION_LIMIT);
    let max_connection_limit = integer("max_connection_limit", 1, MAX_CONNECTION_LIMIT);
    let extensions = extension_list(map, "extensions", &mut problems);
    let allowed_extensions = extension_list(map, "allowed_extensions", &mut problems);

    let connection_limit = connection_limit.unwrap_or(DEFAULT_CONNECTION_LIMIT);
    if let Some(max) = max_connection_limit
        && connection_limit > max
    {
        problems.push(format!(
            "max_connection_limit ({max}) is smaller than connection_limit ({connection_limit})"
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(PlanSettings {
        connection_limit,
        max_connection_limit: match max_connection_limit {
            Some(max) => Some(max),
            None if connection_limit == -1 => None,
            None => Some(connection_limit),
        },
        extensions,
        allowed_extensions,
    })
}

fn extension_list(map: &Map<String, Value>, key: &str, problems: &mut Vec<String>) -> Vec<String> {
    let Some(value) = map.get(key) else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        problems.push(format!("{key} must be a list of extension names"));
        return Vec::new();
    };
    let mut names = Vec::new();
    for item in items {
        match item.as_str() {
            Some(name) if is_valid_extension_name(name) => names.push(name.to_owned()),
            _ => problems.push(format!(
                "{key}: {item} is not a valid extension name (^[a-z_][a-z0-9_]{{0,62}}$)"
            )),
        }
    }
    names
}

/// Combines plan settings and instance parameters (`connection_limit`,
/// `extensions`), checking them again although the broker validated them already.
fn desired_state(
    plan: &PlanSettings,
    parameters: &Map<String, Value>,
) -> Result<Desired, BackendError> {
    for key in parameters.keys() {
        if key != "connection_limit" && key != "extensions" {
            return Err(BackendError::Failed(format!(
                "Unknown parameter {key:?}: this service accepts connection_limit and extensions"
            )));
        }
    }
    let connection_limit = match parameters.get("connection_limit") {
        None => plan.connection_limit,
        Some(value) => {
            let asked = value.as_i64();
            match (asked, plan.max_connection_limit) {
                (Some(n), Some(max)) if (1..=max).contains(&n) => n,
                (Some(n), None) if n == -1 || (1..=MAX_CONNECTION_LIMIT).contains(&n) => n,
                (_, Some(max)) => {
                    return Err(BackendError::Failed(format!(
                        "The parameter connection_limit must be an integer from 1 to {max} in this plan"
                    )));
                }
                (_, None) => {
                    return Err(BackendError::Failed(format!(
                        "The parameter connection_limit must be -1 (unlimited) or an integer from 1 to {MAX_CONNECTION_LIMIT}"
                    )));
                }
            }
        }
    };

    let mut extensions: Vec<String> = plan.extensions.clone();
    if let Some(value) = parameters.get("extensions") {
        let Some(items) = value.as_array() else {
            return Err(BackendError::Failed(
                "The parameter extensions must be a list of extension names".to_owned(),
            ));
        };
        let available: BTreeSet<&str> = plan
            .allowed_extensions
            .iter()
            .chain(&plan.extensions)
            .map(String::as_str)
            .collect();
        for item in items {
            match item.as_str() {
                Some(name) if available.contains(name) => {
                    if !extensions.iter().any(|e| e == name) {
                        extensions.push(name.to_owned());
                    }
                }
                _ => {
                    let list = available.iter().copied().collect::<Vec<_>>().join(", ");
                    return Err(BackendError::Failed(format!(
                        "The extension {item} is not available in this plan (available: {})",
                        if list.is_empty() { "none" } else { &list }
                    )));
                }
            }
        }
    }
    Ok(Desired {
        connection_limit,
        extensions,
    })
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677):
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, all base64.
/// (PostgreSQL SASLprep-normalises passwords first; ASCII passwords are unchanged.)
fn scram_sha256_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let hmac = |key: &[u8], msg: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(msg);
        mac.finalize().into_bytes()
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        BASE64.encode(salt),
        BASE64.encode(stored_key),
        BASE64.encode(server_key)
    )
}

fn sqlstate(err: &sqlx::Error) -> Option<String> {
    err.as_database_error()
        .and_then(|db| db.code())
        .map(|code| code.into_owned())
}

/// duplicate_database, duplicate_object, or unique_violation (two sessions inserting
/// the same catalog row at once).
fn is_already_there(err: &sqlx::Error) -> bool {
    matches!(sqlstate(err).as_deref(), Some("42P04" | "42710" | "23505"))
}

/// Concurrent catalog updates (XX000 "tuple concurrently updated/deleted"),
/// serialization failures and deadlocks: retrying is the cure.
fn is_concurrency_conflict(err: &sqlx::Error) -> bool {
    let Some(db) = err.as_database_error() else {
        return false;
    };
    match db.code().as_deref() {
        Some("40001" | "40P01") => true,
        Some("XX000") => db.message().starts_with("tuple concurrently"),
        _ => false,
    }
}

fn unreachable(what: &str) -> BackendError {
    common::unreachable(SERVER, what)
}

fn missing_database() -> BackendError {
    common::missing_database(SERVER)
}

/// Sorts an sqlx error into "try again later" and "this will not work", with a
/// message fit for platform users. Details go to the log; neither carries a password
/// (statements only ever contain verifiers, and the admin URL is never formatted).
fn classify(err: sqlx::Error, what: &str) -> BackendError {
    common::classify_sqlx(SERVER, &err, what, |db| {
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        tracing::warn!(code, message = db.message(), "PostgreSQL refused to {what}");
        if code.starts_with("08") || code.starts_with("57P") {
            unreachable(what)
        } else if code == "53300" || is_concurrency_conflict(&err) {
            BackendError::Unavailable(format!(
                "The PostgreSQL server for this service is busy; try again later \
                 (could not {what}: {})",
                db.message()
            ))
        } else {
            BackendError::Failed(format!("PostgreSQL refused to {what}: {}", db.message()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::common::params;
    use serde_json::json;

    #[test]
    fn scram_verifier_matches_postgresql() {
        // Computed by PostgreSQL 15 itself (`SET password_encryption = 'scram-sha-256';
        // CREATE ROLE r PASSWORD 'hunter2'`), read back from pg_authid.
        let salt = BASE64.decode("cU9l4nqaYM7sapKexPba3g==").unwrap();
        assert_eq!(
            scram_sha256_verifier("hunter2", &salt, 4096),
            "SCRAM-SHA-256$4096:cU9l4nqaYM7sapKexPba3g==$v21qjgNRMQD0Dwplct4guBv4vQvdHc8JPD9ExAVBur8=:8grdilGhGn5Xod7JohbdSwhdp4/VUB/OhZm4O954UYQ="
        );
        // Computed with Python's hashlib.pbkdf2_hmac / hmac.
        let salt: Vec<u8> = (0..16).collect();
        assert_eq!(
            scram_sha256_verifier("Xk3pQ9rT7mWv2LzN8bYc4HdJ6fGs1aEu", &salt, 4096),
            "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$aswKvxv7evyQmBLvX5KgjQa9buILmwaYGzTMsInqqrc=:BjqJKa0NVZdctwX/clBreTWS/yF2kc30fHsqGE3mQtQ="
        );
    }

    #[test]
    fn plan_settings_defaults_and_problems() {
        let plan = parse_plan_settings(&Value::Null).unwrap();
        assert_eq!(plan.connection_limit, 20);
        assert_eq!(plan.max_connection_limit, Some(20));
        let plan = parse_plan_settings(&json!({"connection_limit": -1})).unwrap();
        assert_eq!(plan.max_connection_limit, None);
        let plan = parse_plan_settings(&json!({
            "connection_limit": 5, "max_connection_limit": 50,
            "extensions": ["citext"], "allowed_extensions": ["pgcrypto", "pg_trgm"]
        }))
        .unwrap();
        assert_eq!(plan.max_connection_limit, Some(50));
        assert_eq!(plan.extensions, ["citext"]);

        let problems = check_plan_settings(&json!({
            "connectionlimit": 5,
            "connection_limit": 10001,
            "max_connection_limit": 0,
            "extensions": ["uuid-ossp", 3],
            "allowed_extensions": "citext",
        }));
        assert_eq!(problems.len(), 6, "{problems:#?}");
        assert!(problems[0].contains("connectionlimit"));
        assert_eq!(
            check_plan_settings(&json!({"connection_limit": 30, "max_connection_limit": 10})).len(),
            1
        );
        assert_eq!(check_plan_settings(&json!([])).len(), 1);
        assert_eq!(
            check_plan_settings(&json!({"connection_limit": 2.5})).len(),
            1
        );
        assert!(check_plan_settings(&json!({})).is_empty());
    }

    #[test]
    fn parameters_are_checked_against_the_plan() {
        let plan = parse_plan_settings(&json!({
            "connection_limit": 5, "max_connection_limit": 50,
            "extensions": ["citext"], "allowed_extensions": ["pgcrypto"]
        }))
        .unwrap();
        let d = desired_state(&plan, &Map::new()).unwrap();
        assert_eq!(d.connection_limit, 5);
        assert_eq!(d.extensions, ["citext"]);
        let d = desired_state(
            &plan,
            &params(json!({"connection_limit": 50, "extensions": ["pgcrypto", "citext"]})),
        )
        .unwrap();
        assert_eq!(d.connection_limit, 50);
        assert_eq!(d.extensions, ["citext", "pgcrypto"]);
        for bad in [
            json!({"connection_limit": 51}),
            json!({"connection_limit": -1}),
            json!({"connection_limit": "5"}),
            json!({"extensions": ["hstore"]}),
            json!({"extensions": ["x\"; DROP DATABASE postgres; --"]}),
            json!({"extensions": "citext"}),
            json!({"other": 1}),
        ] {
            assert!(
                matches!(
                    desired_state(&plan, &params(bad.clone())),
                    Err(BackendError::Failed(_))
                ),
                "{bad}"
            );
        }
        let unlimited = parse_plan_settings(&json!({"connection_limit": -1})).unwrap();
        assert_eq!(
            desired_state(&unlimited, &params(json!({"connection_limit": -1})))
                .unwrap()
                .connection_limit,
            -1
        );
    }

    #[tokio::test]
    async fn credentials_and_debug_never_leak() {
        let backend = PostgresBackend::new(PostgresBackendConfig {
            admin_url: SecretString::from("postgres://admin:s3cr3tpw@db.example:6543/postgres"),
            credentials_host: Some("::1".to_owned()),
            credentials_port: None,
            name_prefix: "bd".to_owned(),
        })
        .unwrap();
        let debug = format!("{backend:?}");
        assert!(!debug.contains("s3cr3tpw"), "{debug}");
        let names = backend.names("i");
        let role = names.binding_role("b");
        let password = SecretString::from("pw".to_owned());
        let creds = backend.credentials(&names.database, &role, &password);
        let db = names.database.as_str();
        let user = role.as_str();
        assert_eq!(
            creds.0["uri"],
            format!("postgresql://{user}:pw@[::1]:6543/{db}")
        );
        assert_eq!(
            creds.0["jdbc_url"],
            format!("jdbc:postgresql://[::1]:6543/{db}?user={user}&password=pw")
        );
        assert_eq!(creds.0["port"], "6543");
        assert!(!format!("{creds:?}").contains("pw"));

        let err = PostgresBackend::new(PostgresBackendConfig::new(SecretString::from(
            "mysql://admin:s3cr3tpw@x/y",
        )))
        .unwrap_err();
        assert!(!format!("{err:#}").contains("s3cr3tpw"));
        let err = PostgresBackend::new(PostgresBackendConfig::new(SecretString::from(
            "postgres://admin:s3cr3tpw@x:port/y",
        )))
        .unwrap_err();
        assert!(!format!("{err:#}").contains("s3cr3tpw"));
        let mut config = PostgresBackendConfig::new(SecretString::from("postgres://x/y"));
        config.name_prefix = "Bad-Prefix".to_owned();
        assert!(PostgresBackend::new(config).is_err());
        let config = PostgresBackendConfig::new(SecretString::from("postgres://h:1/y"));
        assert!(format!("{config:?}").contains("REDACTED"));
    }
}
