//! Every catalog rule of the OSB spec and of Kubernetes Service Catalog, checked at
//! once so that an operator sees all problems in one run, each with its path.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::schema::ParameterSchema;
use super::serve::CatalogBodies;
use super::{Catalog, Execution, Plan, Service};
use crate::backends::{BackendRegistry, KindStatus, ParameterBound, builtin_parameter_bounds};

/// Kubernetes Service Catalog rejects the whole catalog over an id or name longer than this.
const MAX_ID_LEN: usize = 63;
const DEFAULT_MAX_OPERATION: Duration = Duration::from_secs(60 * 60);

const SERVICE_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "bindable",
    "tags",
    "requires",
    "metadata",
    "dashboard_client",
    "plan_updateable",
    "instances_retrievable",
    "bindings_retrievable",
    "allow_context_updates",
    "plans",
    "backend",
];
const PLAN_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "metadata",
    "free",
    "bindable",
    "schemas",
    "plan_updateable",
    "maintenance_info",
    "maximum_polling_duration",
    "binding_rotatable",
    "backend",
    "asynchronous",
    "requires_app",
    "max_operation_duration",
    "binding_lifetime",
];
/// Keys that configure bindery and are never served to platforms.
pub(super) const BINDERY_KEYS: &[&str] = &[
    "backend",
    "asynchronous",
    "requires_app",
    "max_operation_duration",
    "binding_lifetime",
];
const REQUIRES_VALUES: &[&str] = &["syslog_drain", "route_forwarding", "volume_mount"];

struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, path: &str, message: impl AsRef<str>) {
        self.0.push(format!("{path}: {}", message.as_ref()));
    }
}

fn known_keys(map: &Map<String, Value>, allowed: &[&str], path: &str, p: &mut Problems) {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            p.add(
                &format!("{path}.{key}"),
                format!("unknown field; expected one of {}", allowed.join(", ")),
            );
        }
    }
}

/// A required string that is 1 to 63 characters, with no surrounding whitespace.
fn id_like(map: &Map<String, Value>, key: &str, path: &str, p: &mut Problems) -> Option<String> {
    let path = format!("{path}.{key}");
    match map.get(key) {
        None => p.add(&path, "is required"),
        Some(Value::String(s)) if s.trim().is_empty() => p.add(&path, "must not be empty"),
        Some(Value::String(s)) if s.chars().count() > MAX_ID_LEN => p.add(
            &path,
            format!("is {} characters; at most {MAX_ID_LEN} are allowed (Kubernetes Service Catalog rejects longer ones)", s.chars().count()),
        ),
        Some(Value::String(s)) if s.trim() != s => {
            p.add(&path, "must not start or end with whitespace")
        }
        Some(Value::String(s)) => return Some(s.clone()),
        Some(_) => p.add(&path, "must be a string"),
    }
    None
}

/// Names must be CLI-friendly in the 2.13 sense: lowercase letters, digits, hyphens.
fn name(map: &Map<String, Value>, path: &str, p: &mut Problems) -> Option<String> {
    let value = id_like(map, "name", path, p)?;
    if value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some(value)
    } else {
        p.add(
            &format!("{path}.name"),
            format!("`{value}` may contain only lowercase letters, digits and hyphens (OSB 2.13)"),
        );
        None
    }
}

fn description(map: &Map<String, Value>, path: &str, p: &mut Problems) {
    let path = format!("{path}.description");
    match map.get("description") {
        None => p.add(&path, "is required"),
        Some(Value::String(s)) if s.trim().is_empty() => p.add(&path, "must not be empty"),
        Some(Value::String(_)) => {}
        Some(_) => p.add(&path, "must be a string"),
    }
}

fn opt_bool(map: &Map<String, Value>, key: &str, path: &str, p: &mut Problems) -> Option<bool> {
    match map.get(key) {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            p.add(&format!("{path}.{key}"), "must be true or false");
            None
        }
    }
}

fn opt_object(map: &Map<String, Value>, key: &str, path: &str, p: &mut Problems) {
    if let Some(v) = map.get(key)
        && !v.is_object()
    {
        p.add(&format!("{path}.{key}"), "must be an object");
    }
}

fn string_array(map: &Map<String, Value>, key: &str, path: &str, p: &mut Problems) -> Vec<String> {
    let mut out = Vec::new();
    match map.get(key) {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if !s.is_empty() => out.push(s.clone()),
                    _ => p.add(&format!("{path}.{key}[{i}]"), "must be a non-empty string"),
                }
            }
        }
        Some(_) => p.add(&format!("{path}.{key}"), "must be a list of strings"),
    }
    out
}

/// The services and plans read so far, and what was found wrong with them.
struct Build<'r> {
    registry: &'r BackendRegistry,
    p: Problems,
    /// Service and plan ids (globally unique), with where each was first seen.
    seen_ids: HashMap<String, String>,
    seen_service_names: HashMap<String, String>,
    /// Plans left out because their backend is not configured here.
    unconfigured_warnings: Vec<String>,
}

/// What a plan takes from its service unless it says otherwise.
struct Inherited<'a> {
    backend: Option<&'a Value>,
    bindable: bool,
    plan_updateable: bool,
}

/// Builds the catalog, or returns every problem found.
pub(super) fn build(document: &Value, registry: &BackendRegistry) -> Result<Catalog, Vec<String>> {
    let mut b = Build {
        registry,
        p: Problems(Vec::new()),
        seen_ids: HashMap::new(),
        seen_service_names: HashMap::new(),
        unconfigured_warnings: Vec::new(),
    };
    let Some(root) = document.as_object() else {
        return Err(vec![
            "(root): must be a mapping with a `services` list".to_owned(),
        ]);
    };
    known_keys(root, &["services"], "(root)", &mut b.p);
    let services_raw = list(
        root.get("services"),
        "services",
        "is required (it may be an empty list)",
        &mut b.p,
    );
    let mut services = Vec::new();
    let mut served_documents = Vec::new();
    for (si, raw_service) in services_raw.iter().enumerate() {
        if let Some((service, served)) = b.service(&format!("services[{si}]"), raw_service) {
            services.push(service);
            served_documents.push(served);
        }
    }
    if !b.p.0.is_empty() {
        return Err(b.p.0);
    }
    for warning in b.unconfigured_warnings {
        tracing::warn!("{warning}");
    }
    let service_index = services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();
    Ok(Catalog {
        bodies: CatalogBodies::build(&served_documents),
        services,
        service_index,
    })
}

/// A list field: its items, or none after a problem.
fn list<'v>(value: Option<&'v Value>, path: &str, missing: &str, p: &mut Problems) -> &'v [Value] {
    match value {
        Some(Value::Array(items)) => items,
        Some(_) => {
            p.add(path, "must be a list");
            &[]
        }
        None => {
            p.add(path, missing);
            &[]
        }
    }
}

/// Records `value` as seen at `at`; a second use is a problem (`note` says in what scope).
fn unique(
    seen: &mut HashMap<String, String>,
    value: Option<&String>,
    at: String,
    note: &str,
    p: &mut Problems,
) {
    if let Some(value) = value
        && let Some(first) = seen.insert(value.clone(), at.clone())
    {
        p.add(&at, format!("`{value}` is already used at {first}{note}"));
    }
}

impl Build<'_> {
    /// One service and its plans: the service and its served document, or `None`
    /// when it has problems or no plan is served here.
    fn service(&mut self, path: &str, raw_service: &Value) -> Option<(Service, Value)> {
        let p = &mut self.p;
        let Entry {
            map: service_map,
            id,
            name: service_name,
        } = entry(raw_service, SERVICE_KEYS, path, p)?;
        let bindable = match service_map.get("bindable") {
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                p.add(&format!("{path}.bindable"), "must be true or false");
                false
            }
            None => {
                p.add(&format!("{path}.bindable"), "is required");
                false
            }
        };
        service_lists(service_map, path, p);
        opt_object(service_map, "metadata", path, p);
        dashboard_client(service_map, path, p);
        let plan_updateable = opt_bool(service_map, "plan_updateable", path, p).unwrap_or(false);
        let instances_retrievable =
            opt_bool(service_map, "instances_retrievable", path, p).unwrap_or(false);
        let bindings_retrievable =
            opt_bool(service_map, "bindings_retrievable", path, p).unwrap_or(false);
        opt_bool(service_map, "allow_context_updates", path, p);
        unique(&mut self.seen_ids, id.as_ref(), format!("{path}.id"), "", p);
        let names = &mut self.seen_service_names;
        unique(names, service_name.as_ref(), format!("{path}.name"), "", p);

        let plans_path = format!("{path}.plans");
        let plans_raw = list(
            service_map.get("plans"),
            &plans_path,
            "is required (at least one plan)",
            p,
        );
        if plans_raw.is_empty() && matches!(service_map.get("plans"), Some(Value::Array(_))) {
            p.add(&plans_path, "needs at least one plan");
        }
        let inherited = Inherited {
            backend: service_map.get("backend"),
            bindable,
            plan_updateable,
        };
        let mut plan_names: HashMap<String, String> = HashMap::new();
        let mut plans = Vec::new();
        let mut served_plans = Vec::new();
        for (pi, raw_plan) in plans_raw.iter().enumerate() {
            let ppath = format!("{plans_path}[{pi}]");
            if let Some((plan, served)) = self.plan(&ppath, raw_plan, &inherited, &mut plan_names) {
                plans.push(plan);
                served_plans.push(Value::Object(served));
            }
        }

        // A service whose every plan was left out (its backend is not configured
        // here) is left out too.
        let (Some(id), Some(service_name)) = (id, service_name) else {
            return None;
        };
        if plans.is_empty() {
            return None;
        }
        let mut served = strip_bindery_keys(service_map);
        served.insert("plans".to_owned(), Value::Array(served_plans));
        let service = Service {
            id,
            name: service_name,
            bindable,
            plan_updateable,
            instances_retrievable,
            bindings_retrievable,
            plans,
        };
        Some((service, Value::Object(served)))
    }

    /// One plan: the plan and its served document, or `None` when it has problems or
    /// its backend is not configured here.
    fn plan(
        &mut self,
        ppath: &str,
        raw_plan: &Value,
        inherited: &Inherited<'_>,
        plan_names: &mut HashMap<String, String>,
    ) -> Option<(Plan, Map<String, Value>)> {
        let p = &mut self.p;
        let Entry {
            map: plan_map,
            id: plan_id,
            name: plan_name,
        } = entry(raw_plan, PLAN_KEYS, ppath, p)?;
        opt_object(plan_map, "metadata", ppath, p);
        opt_bool(plan_map, "free", ppath, p);
        let plan_bindable = opt_bool(plan_map, "bindable", ppath, p);
        let plan_plan_updateable = opt_bool(plan_map, "plan_updateable", ppath, p);
        let binding_rotatable = opt_bool(plan_map, "binding_rotatable", ppath, p).unwrap_or(false);
        let binding_lifetime = binding_lifetime(plan_map, ppath, p);
        let requires_app = opt_bool(plan_map, "requires_app", ppath, p).unwrap_or(false);
        if let Some(v) = plan_map.get("maximum_polling_duration")
            && v.as_u64().is_none_or(|n| n == 0)
        {
            p.add(
                &format!("{ppath}.maximum_polling_duration"),
                "must be a positive whole number of seconds",
            );
        }
        let max_operation_duration = max_operation_duration(plan_map, ppath, p);
        let maintenance_version = maintenance_version(plan_map, ppath, p);
        let execution = execution(plan_map, ppath, p);
        let note = " (service and plan ids must be globally unique)";
        unique(
            &mut self.seen_ids,
            plan_id.as_ref(),
            format!("{ppath}.id"),
            note,
            p,
        );
        let note = " in this service";
        unique(
            plan_names,
            plan_name.as_ref(),
            format!("{ppath}.name"),
            note,
            p,
        );

        let schemas = plan_schemas(plan_map, ppath, p);
        let (kind, settings, usable) = plan_backend(
            inherited.backend,
            plan_map.get("backend"),
            ppath,
            self.registry,
            p,
            &mut self.unconfigured_warnings,
        );
        if let Some(kind) = &kind {
            schemas_within_bounds(plan_map, ppath, kind, &settings, self.registry, p);
        }
        let (Some(plan_id), Some(plan_name), Some(kind)) = (plan_id, plan_name, kind) else {
            return None;
        };
        if !usable {
            return None;
        }
        let plan = Plan {
            id: plan_id,
            name: plan_name,
            bindable: plan_bindable.unwrap_or(inherited.bindable),
            plan_updateable: plan_plan_updateable.unwrap_or(inherited.plan_updateable),
            backend_kind: kind,
            backend_settings: settings,
            execution,
            requires_app,
            max_operation_duration,
            maintenance_version,
            binding_rotatable,
            binding_lifetime,
            create_schema: schemas.0,
            update_schema: schemas.1,
            bind_schema: schemas.2,
        };
        Some((plan, strip_bindery_keys(plan_map)))
    }
}

/// A service or a plan: its mapping, its id and its name (`None` after a problem).
struct Entry<'v> {
    map: &'v Map<String, Value>,
    id: Option<String>,
    name: Option<String>,
}

/// What a service and a plan both have: a mapping of known keys with an id, a name
/// and a description.
fn entry<'v>(raw: &'v Value, keys: &[&str], path: &str, p: &mut Problems) -> Option<Entry<'v>> {
    let Some(map) = raw.as_object() else {
        p.add(path, "must be a mapping");
        return None;
    };
    known_keys(map, keys, path, p);
    let id = id_like(map, "id", path, p);
    let entry_name = name(map, path, p);
    description(map, path, p);
    Some(Entry {
        map,
        id,
        name: entry_name,
    })
}

/// A service's `tags` and `requires` (whose values the spec fixes).
fn service_lists(service_map: &Map<String, Value>, path: &str, p: &mut Problems) {
    string_array(service_map, "tags", path, p);
    for (i, req) in string_array(service_map, "requires", path, p)
        .iter()
        .enumerate()
    {
        if !REQUIRES_VALUES.contains(&req.as_str()) {
            p.add(
                &format!("{path}.requires[{i}]"),
                format!("`{req}` is not one of {}", REQUIRES_VALUES.join(", ")),
            );
        }
    }
}

fn dashboard_client(service_map: &Map<String, Value>, path: &str, p: &mut Problems) {
    let Some(client) = service_map.get("dashboard_client") else {
        return;
    };
    let cpath = format!("{path}.dashboard_client");
    match client.as_object() {
        Some(c) => {
            known_keys(c, &["id", "secret", "redirect_uri"], &cpath, p);
            for key in ["id", "secret"] {
                match c.get(key) {
                    Some(Value::String(s)) if !s.trim().is_empty() => {}
                    _ => p.add(&format!("{cpath}.{key}"), "must be a non-empty string"),
                }
            }
        }
        None => p.add(&cpath, "must be a mapping"),
    }
}

fn binding_lifetime(
    plan_map: &Map<String, Value>,
    ppath: &str,
    p: &mut Problems,
) -> Option<Duration> {
    let v = plan_map.get("binding_lifetime")?;
    match v.as_u64() {
        Some(secs) if secs >= 5 => Some(Duration::from_secs(secs)),
        _ => {
            p.add(
                &format!("{ppath}.binding_lifetime"),
                "must be a whole number of seconds, at least 5",
            );
            None
        }
    }
}

fn max_operation_duration(
    plan_map: &Map<String, Value>,
    ppath: &str,
    p: &mut Problems,
) -> Duration {
    let Some(v) = plan_map.get("max_operation_duration") else {
        return DEFAULT_MAX_OPERATION;
    };
    match v.as_u64() {
        Some(secs) if secs > 0 => Duration::from_secs(secs),
        _ => {
            p.add(
                &format!("{ppath}.max_operation_duration"),
                "must be a positive whole number of seconds",
            );
            DEFAULT_MAX_OPERATION
        }
    }
}

fn maintenance_version(
    plan_map: &Map<String, Value>,
    ppath: &str,
    p: &mut Problems,
) -> Option<String> {
    let mpath = format!("{ppath}.maintenance_info");
    match plan_map.get("maintenance_info")? {
        Value::Object(mi) => {
            known_keys(mi, &["version", "description"], &mpath, p);
            match mi.get("version") {
                Some(Value::String(v)) if is_semver(v) => Some(v.clone()),
                _ => {
                    p.add(
                        &format!("{mpath}.version"),
                        "is required and must be a SemVer 2.0 version such as 1.2.0",
                    );
                    None
                }
            }
        }
        _ => {
            p.add(&mpath, "must be a mapping");
            None
        }
    }
}

fn execution(plan_map: &Map<String, Value>, ppath: &str, p: &mut Problems) -> Execution {
    let apath = format!("{ppath}.asynchronous");
    match plan_map.get("asynchronous") {
        None => Execution::Preferred,
        Some(Value::String(s)) => match s.as_str() {
            "preferred" => Execution::Preferred,
            "required" => Execution::Required,
            "never" => Execution::Never,
            other => {
                p.add(
                    &apath,
                    format!("`{other}` is not one of preferred, required, never"),
                );
                Execution::Preferred
            }
        },
        Some(_) => {
            p.add(&apath, "must be one of preferred, required, never");
            Execution::Preferred
        }
    }
}

/// The plan's instance parameter schemas must not admit what its backend refuses.
fn schemas_within_bounds(
    plan_map: &Map<String, Value>,
    ppath: &str,
    kind: &str,
    settings: &Value,
    registry: &BackendRegistry,
    p: &mut Problems,
) {
    let bounds = match registry.status(kind) {
        KindStatus::Ready(backend) => backend.parameter_bounds(settings),
        KindStatus::Unconfigured { .. } => builtin_parameter_bounds(kind, settings),
        KindStatus::Unknown => Vec::new(),
    };
    for action in ["create", "update"] {
        let schema = plan_map
            .get("schemas")
            .and_then(|s| s.get("service_instance"))
            .and_then(|s| s.get(action))
            .and_then(|a| a.get("parameters"));
        let spath = format!("{ppath}.schemas.service_instance.{action}.parameters");
        schema_within_bounds(schema, &spath, &bounds, p);
    }
}

type PlanSchemas = (
    Option<ParameterSchema>,
    Option<ParameterSchema>,
    Option<ParameterSchema>,
);

fn plan_schemas(plan: &Map<String, Value>, path: &str, p: &mut Problems) -> PlanSchemas {
    let mut out: PlanSchemas = (None, None, None);
    let Some(schemas) = plan.get("schemas") else {
        return out;
    };
    let spath = format!("{path}.schemas");
    let Some(schemas) = schemas.as_object() else {
        p.add(&spath, "must be a mapping");
        return out;
    };
    known_keys(schemas, &["service_instance", "service_binding"], &spath, p);
    let mut compile = |group: &str, action: &str| -> Option<ParameterSchema> {
        let g = schemas.get(group)?;
        let gpath = format!("{spath}.{group}");
        let Some(g) = g.as_object() else {
            p.add(&gpath, "must be a mapping");
            return None;
        };
        let allowed: &[&str] = if group == "service_instance" {
            &["create", "update"]
        } else {
            &["create"]
        };
        if action == "create" {
            known_keys(g, allowed, &gpath, p);
        }
        let a = g.get(action)?;
        let apath = format!("{gpath}.{action}");
        let Some(a) = a.as_object() else {
            p.add(&apath, "must be a mapping with `parameters`");
            return None;
        };
        known_keys(a, &["parameters"], &apath, p);
        let params = a.get("parameters")?;
        let ppath = format!("{apath}.parameters");
        if !params.is_object() {
            p.add(&ppath, "must be a JSON Schema object");
            return None;
        }
        match ParameterSchema::compile(params) {
            Ok(s) => Some(s),
            Err(problems) => {
                for problem in problems {
                    p.add(&ppath, problem);
                }
                None
            }
        }
    };
    out.0 = compile("service_instance", "create");
    out.1 = compile("service_instance", "update");
    out.2 = compile("service_binding", "create");
    out
}

/// Resolves a plan's backend: kind from the plan or the service, settings merged
/// (plan keys win). Returns (kind, settings, usable here).
fn plan_backend(
    service_backend: Option<&Value>,
    plan_backend: Option<&Value>,
    path: &str,
    registry: &BackendRegistry,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> (Option<String>, Value, bool) {
    let mut kind = None;
    let mut settings = Map::new();
    for (source, source_path) in [
        (
            service_backend,
            path.rsplit_once(".plans")
                .map(|(s, _)| format!("{s}.backend"))
                .unwrap_or_default(),
        ),
        (plan_backend, format!("{path}.backend")),
    ] {
        let Some(source) = source else { continue };
        let Some(map) = source.as_object() else {
            p.add(
                &source_path,
                "must be a mapping with `kind` and optional `settings`",
            );
            continue;
        };
        known_keys(map, &["kind", "settings"], &source_path, p);
        match map.get("kind") {
            Some(Value::String(k)) if !k.is_empty() => kind = Some(k.clone()),
            Some(_) => p.add(&format!("{source_path}.kind"), "must be a non-empty string"),
            None => {}
        }
        match map.get("settings") {
            Some(Value::Object(s)) => settings.extend(s.clone()),
            Some(_) => p.add(&format!("{source_path}.settings"), "must be a mapping"),
            None => {}
        }
    }
    let Some(kind) = kind else {
        p.add(
            &format!("{path}.backend.kind"),
            "is required (on the plan or its service)",
        );
        return (None, Value::Null, false);
    };
    let settings = Value::Object(settings);
    let (problems, usable) = match registry.status(&kind) {
        KindStatus::Ready(backend) => (backend.check_plan_settings(&settings), true),
        KindStatus::Unconfigured { checker, reason } => {
            warnings.push(format!(
                "plan at {path} is not served: backend `{kind}` is not configured ({reason})"
            ));
            (checker(&settings), false)
        }
        KindStatus::Unknown => {
            p.add(
                &format!("{path}.backend.kind"),
                format!(
                    "`{kind}` is not a backend kind; known kinds: {}",
                    registry.kinds().join(", ")
                ),
            );
            return (None, Value::Null, false);
        }
    };
    for problem in problems {
        p.add(&format!("{path}.backend.settings"), problem);
    }
    (Some(kind), settings, usable)
}

/// Reports where an instance parameter schema admits what the plan's backend settings
/// refuse (a value the platform's user would see accepted, then failing). A missing
/// schema admits everything.
fn schema_within_bounds(
    schema: Option<&Value>,
    path: &str,
    bounds: &[ParameterBound],
    p: &mut Problems,
) {
    if bounds.is_empty() {
        return;
    }
    let Some(schema) = schema.and_then(Value::as_object) else {
        p.add(
            path,
            "is missing, so every parameter is admitted; the plan's backend restricts them, so give the plan a schema that says how",
        );
        return;
    };
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for bound in bounds {
        match bound {
            ParameterBound::Only(names) => {
                if schema.get("additionalProperties") != Some(&Value::Bool(false)) {
                    p.add(
                        path,
                        format!(
                            "admits any parameter; the plan's backend accepts {}: set additionalProperties: false",
                            if names.is_empty() { "none".to_owned() } else { format!("only {}", names.join(", ")) }
                        ),
                    );
                }
                for key in properties.keys().filter(|k| !names.contains(k)) {
                    p.add(
                        &format!("{path}.properties.{key}"),
                        "is a parameter the plan's backend does not accept",
                    );
                }
            }
            ParameterBound::Integer {
                name,
                minimum,
                maximum,
            } => {
                let Some(property) = properties.get(name) else {
                    continue;
                };
                let ppath = format!("{path}.properties.{name}");
                match property.get("maximum").and_then(Value::as_f64) {
                    Some(m) if m <= *maximum as f64 => {}
                    admitted => p.add(
                        &format!("{ppath}.maximum"),
                        format!(
                            "admits {}, but the plan's backend settings allow at most {maximum}",
                            admitted.map_or("any value".to_owned(), |m| format!("up to {m}"))
                        ),
                    ),
                }
                match property.get("minimum").and_then(Value::as_f64) {
                    Some(m) if m >= *minimum as f64 => {}
                    admitted => p.add(
                        &format!("{ppath}.minimum"),
                        format!(
                            "admits {}, but the plan's backend settings allow at least {minimum}",
                            admitted.map_or("any value".to_owned(), |m| format!("down to {m}"))
                        ),
                    ),
                }
            }
            ParameterBound::ItemsOneOf { name, allowed } => {
                let Some(property) = properties.get(name) else {
                    continue;
                };
                let listed = property
                    .get("items")
                    .and_then(|i| i.get("enum"))
                    .and_then(Value::as_array);
                let ok = listed.is_some_and(|items| {
                    items
                        .iter()
                        .all(|i| i.as_str().is_some_and(|s| allowed.iter().any(|a| a == s)))
                });
                if !ok {
                    p.add(
                        &format!("{path}.properties.{name}.items.enum"),
                        format!(
                            "must list only what the plan's backend settings allow: {}",
                            allowed.join(", ")
                        ),
                    );
                }
            }
        }
    }
}

fn strip_bindery_keys(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| !super::validate::BINDERY_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// SemVer 2.0: MAJOR.MINOR.PATCH with optional pre-release and build parts.
fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_rules() {
        assert!(is_semver("1.0.0"));
        assert!(is_semver("1.2.3-rc.1+build"));
        assert!(!is_semver("1.0"));
        assert!(!is_semver("01.0.0"));
        assert!(!is_semver("a.b.c"));
    }
}
