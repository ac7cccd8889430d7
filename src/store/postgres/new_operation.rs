//! Registering a new operation in the statement that changes the state it gates, so
//! that a request that registers work costs one round trip. Used by the instance, the
//! binding and the queue modules alike.

use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;

use crate::store::NewOperation;

/// The start of a statement that inserts the operation `$1`..`$8` binds (see
/// [`bind_operation`]), completed by `from <a gating CTE>`: the operation is written
/// only when the gate returns a row, in the same statement as the state change.
macro_rules! insert_operation_from {
    ($gate:literal) => {
        concat!(
            "insert into operation (operation_id, instance_id, binding_id, kind, state, request, \
                 deadline_at, lease_owner, lease_expires_at, attempts, lease_token) \
             select $1, $2, $3, $4, 'in progress', $5, now() + $6, $7, \
                 case when $7::text is null then null else now() + $8 end, \
                 case when $7::text is null then 0 else 1 end, \
                 case when $7::text is null then null else $1 end \
             from ",
            $gate
        )
    };
}
pub(super) use insert_operation_from;

/// Binds an operation's values as `$1`..`$8`, in the order `insert_operation_from!`
/// expects; the statement's own values follow from `$9`. An inline run's lease token
/// is the operation id (see [`NewOperation::inline_owner`]).
pub(super) fn bind_operation<'q>(
    query: Query<'q, Postgres, PgArguments>,
    op: &'q NewOperation<'q>,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(op.operation_id)
        .bind(op.instance_id)
        .bind(op.binding_id)
        .bind(op.kind.as_str())
        .bind(&op.request)
        .bind(op.deadline)
        .bind(op.inline_owner)
        .bind(op.lease)
}
