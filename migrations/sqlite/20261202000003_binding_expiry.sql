-- Binding expiry (issue 13, item 6), as migrations/postgres/20261202000003: a binding
-- past its expires_at has its credentials removed by a `revoke` operation that the
-- worker's sweep enqueues; revoked_at (microseconds since the epoch) records when.
alter table service_binding add column revoked_at integer;

-- SQLite cannot change a check constraint in place: the operation table is rebuilt
-- with `revoke` among the kinds, its columns in the same order (the initial ones, then
-- lease_token and waits_for), and its indexes recreated. Nothing references it.
create table operation_new (
    operation_id     text primary key not null check (
        length(operation_id) = 36 and operation_id = lower(operation_id)),
    instance_id      text not null,
    binding_id       text,
    -- provision | update | deprovision | bind | unbind | revoke
    kind             text not null,
    -- the wire spelling: 'in progress' | 'succeeded' | 'failed'
    state            text not null,
    -- user-facing text; never a stack trace or a credential
    description      text,
    -- what the operation applies (target plan and parameters of an update)
    request          text not null default '{}' check (json_valid(request)),
    attempts         integer not null default 0,
    next_attempt_at  integer not null,
    lease_owner      text,
    lease_expires_at integer,
    deadline_at      integer not null,
    created_at       integer not null,
    updated_at       integer not null,
    finished_at      integer,
    lease_token      text,
    waits_for        text,
    constraint operation_kind_check
        check (kind in ('provision', 'update', 'deprovision', 'bind', 'unbind', 'revoke')),
    constraint operation_state_check
        check (state in ('in progress', 'succeeded', 'failed'))
) strict;

-- rowid order is kept: it breaks ties between operations created in one microsecond.
insert into operation_new (rowid, operation_id, instance_id, binding_id, kind, state,
    description, request, attempts, next_attempt_at, lease_owner, lease_expires_at,
    deadline_at, created_at, updated_at, finished_at, lease_token, waits_for)
select rowid, operation_id, instance_id, binding_id, kind, state,
    description, request, attempts, next_attempt_at, lease_owner, lease_expires_at,
    deadline_at, created_at, updated_at, finished_at, lease_token, waits_for
from operation;

drop table operation;
alter table operation_new rename to operation;

create index operation_runnable
    on operation (next_attempt_at) where state = 'in progress';
create index operation_by_instance
    on operation (instance_id, created_at desc);
create index operation_by_binding
    on operation (binding_id, created_at desc) where binding_id is not null;

-- At most one revoke waiting or running per binding: the sweep inserts with
-- `insert or ignore`.
create unique index operation_one_revoke
    on operation (binding_id) where kind = 'revoke' and state = 'in progress';

-- The sweep: live bindings with an end of validity whose credentials still exist.
create index service_binding_expiring
    on service_binding (expires_at)
    where expires_at is not null and revoked_at is null and deleted_at is null;
