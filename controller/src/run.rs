//! The three controllers (brokers, instances, bindings) wired to their watches.

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use crate::conditions::{self, READY};
use crate::context::{self, Context, Error};
use crate::crd::{ClusterServiceBroker, ClusterServicePlan, ServiceBinding, ServiceInstance};
use crate::{binding, broker, instance};

/// Runs every controller until one of them ends (they end only when their watch does).
pub async fn controllers(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let config = watcher::Config::default();

    let brokers = Controller::new(
        Api::<ClusterServiceBroker>::all(client.clone()),
        config.clone(),
    )
    .run(broker::reconcile, error_policy, ctx.clone())
    .for_each(|r| async move { log("ClusterServiceBroker", r.err()) });

    // An instance waits for its bindings to go (on delete) and for its plan to exist.
    let instances = Controller::new(Api::<ServiceInstance>::all(client.clone()), config.clone());
    let waiting = instances.store();
    let instances = instances
        .watches(
            Api::<ServiceBinding>::all(client.clone()),
            config.clone(),
            |b| instance::owner_of(&b),
        )
        .watches(
            Api::<ClusterServicePlan>::all(client.clone()),
            config.clone(),
            move |_plan: ClusterServicePlan| {
                waiting
                    .state()
                    .into_iter()
                    .filter(|si| {
                        !si.status
                            .as_ref()
                            .is_some_and(|s| conditions::is_true(&s.conditions, READY))
                    })
                    .map(|si| ObjectRef::from_obj(&*si))
                    .collect::<Vec<_>>()
            },
        )
        .run(instance::reconcile, error_policy, ctx.clone())
        .for_each(|r| async move { log("ServiceInstance", r.err()) });

    // A binding waits for its instance to be Ready.
    let bindings = Controller::new(Api::<ServiceBinding>::all(client.clone()), config.clone());
    let all_bindings = bindings.store();
    let bindings = bindings
        .watches(
            Api::<ServiceInstance>::all(client.clone()),
            config,
            move |si: ServiceInstance| {
                all_bindings
                    .state()
                    .into_iter()
                    .filter(|b| {
                        b.spec.instance_ref.name == si.name_any() && b.namespace() == si.namespace()
                    })
                    .map(|b| ObjectRef::from_obj(&*b))
                    .collect::<Vec<_>>()
            },
        )
        .run(binding::reconcile, error_policy, ctx.clone())
        .for_each(|r| async move { log("ServiceBinding", r.err()) });

    tokio::select! {
        () = brokers => {}
        () = instances => {}
        () = bindings => {}
    }
}

/// A pass that failed on a Kubernetes call (most often a conflict: someone wrote the object in
/// between) is retried with the object's backoff.
fn error_policy<K: kube::Resource>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(object = %context::key(&*obj), %error, "reconcile failed");
    Action::requeue(ctx.backoff(&format!("error:{}", context::key(&*obj))))
}

fn log<E: std::fmt::Display>(kind: &str, error: Option<E>) {
    if let Some(e) = error {
        tracing::debug!(kind, error = %e, "controller");
    }
}
