//! Instances on plans the catalog no longer offers ("retired" plans): what start-up
//! does about them. They stay fetchable, pollable, unbindable and deletable; the
//! executor reaches their backend through the kind recorded on the instance.

use crate::catalog::Catalog;
use crate::store::Store;

/// Records the backend kind on instances written before bindery kept it, for plans
/// still offered, and warns once about instances whose plan (or whole service) is
/// gone. Returns how many instances sit on retired plans.
pub async fn reconcile_instance_plans(store: &Store, catalog: &Catalog) -> anyhow::Result<i64> {
    let mut retired = 0;
    for usage in store.instance_plans().await? {
        match catalog.plan(&usage.service_id, &usage.plan_id) {
            Some((_, plan)) => {
                if usage.backend_kind.is_none() {
                    store
                        .fill_backend_kind(&usage.service_id, &usage.plan_id, &plan.backend_kind)
                        .await?;
                }
            }
            None => retired += usage.instances,
        }
    }
    if retired > 0 {
        tracing::warn!(
            instances = retired,
            "{retired} instance(s) sit on plans that are no longer offered: they can be fetched, polled, unbound and deleted, but not updated or bound"
        );
    }
    Ok(retired)
}
