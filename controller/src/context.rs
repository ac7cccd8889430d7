//! What every reconciler shares: the Kubernetes client, the settings, the cluster id, the
//! retry backoff per object, events, and the OSB client of a broker resource.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};

use crate::crd::ClusterServiceBroker;
use crate::osb;

/// The reconcilers' error: a Kubernetes call failed, or something the next pass may fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings of the controller, from its command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Timeout of one OSB request (Service Catalog: 60 s).
    pub osb_timeout: Duration,
    /// The longest wait between two retries or polls (Service Catalog: 20 min).
    pub max_backoff: Duration,
    /// How long a provision, update or deprovision is retried before it is given up (7 days).
    pub max_retry_duration: Duration,
    /// Relist interval of a broker with relistBehavior Duration and no relistDuration.
    pub default_relist: Duration,
    /// Name reported in events and as the Lease holder.
    pub identity: String,
}

/// The shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    /// `organization_guid` and `context.clusterid`.
    pub cluster_id: String,
    /// Retries and polls since the last progress, per object, for the backoff.
    attempts: Mutex<HashMap<String, u32>>,
    /// The HTTP client for brokers without a CA bundle of their own.
    http: reqwest::Client,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(client: Client, settings: Settings, cluster_id: String) -> Result<Self> {
        let http = osb::http_client(settings.osb_timeout, None, false).map_err(Error::Other)?;
        Ok(Self {
            client,
            settings,
            cluster_id,
            attempts: Mutex::new(HashMap::new()),
            http,
        })
    }

    /// The wait before the next retry or poll of `key`: 1 s, 2 s, 4 s, … up to `max_backoff`.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let n = attempts.entry(key.to_owned()).or_insert(0);
        let wait = Duration::from_secs(1u64 << (*n).min(20)).min(self.settings.max_backoff);
        *n += 1;
        wait
    }

    /// `key` made progress: the next wait starts at 1 s again.
    pub fn reset_backoff(&self, key: &str) {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Publishes an event about `obj`; a failure is logged, never fatal.
    pub async fn event<K>(&self, obj: &K, warning: bool, reason: &str, note: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let reporter = Reporter {
            controller: "bindery-controller".into(),
            instance: Some(self.settings.identity.clone()),
        };
        let reference: ObjectReference = obj.object_ref(&());
        let recorder = Recorder::new(self.client.clone(), reporter, reference);
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.to_owned(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(event).await {
            tracing::warn!(error = %e, reason, "could not publish an event");
        }
    }

    /// The OSB client of broker `name`, with the credentials of its Secret read now (so a
    /// rotated Secret is used at once).
    pub async fn broker(&self, name: &str) -> Result<osb::Broker> {
        let broker = Api::<ClusterServiceBroker>::all(self.client.clone())
            .get(name)
            .await?;
        self.osb_client(&broker).await
    }

    pub async fn osb_client(&self, broker: &ClusterServiceBroker) -> Result<osb::Broker> {
        let spec = &broker.spec;
        let auth = match &spec.auth_info {
            Some(info) if info.basic.is_some() => {
                let r = &info
                    .basic
                    .as_ref()
                    .map(|b| &b.secret_ref)
                    .ok_or_else(|| Error::Other("no secretRef".into()))?;
                osb::Auth::Basic {
                    username: self.secret_key(&r.namespace, &r.name, "username").await?,
                    password: self.secret_key(&r.namespace, &r.name, "password").await?,
                }
            }
            Some(info) if info.bearer.is_some() => {
                let r = &info
                    .bearer
                    .as_ref()
                    .map(|b| &b.secret_ref)
                    .ok_or_else(|| Error::Other("no secretRef".into()))?;
                osb::Auth::Bearer(self.secret_key(&r.namespace, &r.name, "token").await?)
            }
            _ => osb::Auth::None,
        };
        let insecure = spec.insecure_skip_tls_verify.unwrap_or(false);
        let http = match &spec.ca_bundle {
            None if !insecure => self.http.clone(),
            ca => {
                let pem = match ca {
                    Some(b64) => Some(
                        base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map_err(|e| Error::Other(format!("caBundle is not base64: {e}")))?,
                    ),
                    None => None,
                };
                osb::http_client(self.settings.osb_timeout, pem.as_deref(), insecure)
                    .map_err(Error::Other)?
            }
        };
        Ok(osb::Broker::new(http, &spec.url, auth))
    }

    /// One key of a Secret, as text.
    pub async fn secret_key(&self, namespace: &str, name: &str, key: &str) -> Result<String> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await?
            .ok_or_else(|| Error::Other(format!("Secret {namespace}/{name} does not exist")))?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or_else(|| Error::Other(format!("Secret {namespace}/{name} has no key {key:?}")))?;
        String::from_utf8(bytes.0.clone()).map_err(|_| {
            Error::Other(format!(
                "Secret {namespace}/{name} key {key:?} is not UTF-8"
            ))
        })
    }
}

/// The cluster id: key `id` of ConfigMap `cluster-info` in `namespace`, made with a random UUID
/// the first time (as Service Catalog did), so it stays the same across restarts and replicas.
pub async fn cluster_id(client: &Client, namespace: &str) -> Result<String> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    loop {
        if let Some(cm) = api.get_opt("cluster-info").await? {
            if let Some(id) = cm.data.as_ref().and_then(|d| d.get("id")) {
                return Ok(id.clone());
            }
            let mut cm = cm;
            cm.data
                .get_or_insert_with(Default::default)
                .insert("id".into(), uuid::Uuid::new_v4().to_string());
            match api.replace("cluster-info", &Default::default(), &cm).await {
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                other => other?,
            };
            continue;
        }
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("cluster-info".into()),
                ..Default::default()
            },
            data: Some([("id".to_owned(), uuid::Uuid::new_v4().to_string())].into()),
            ..Default::default()
        };
        match api.create(&Default::default(), &cm).await {
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            other => other?,
        };
    }
}

/// `namespace/name` of an object, the key of its backoff.
pub fn key<K: Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}
