-- Binding expiry (issue 13, item 6): a binding past its expires_at has its credentials
-- removed by a `revoke` operation that the worker's sweep enqueues. The binding itself
-- stays (the platform's unbind still removes it); revoked_at records when its
-- credentials stopped working.
alter table service_binding add column revoked_at timestamptz;

alter table operation drop constraint operation_kind_check;
alter table operation add constraint operation_kind_check
    check (kind in ('provision', 'update', 'deprovision', 'bind', 'unbind', 'revoke'));

-- At most one revoke waiting or running per binding, whichever replica's sweep saw the
-- binding first: the sweep inserts with `on conflict do nothing`.
create unique index operation_one_revoke
    on operation (binding_id) where kind = 'revoke' and state = 'in progress';

-- The sweep: live bindings with an end of validity whose credentials still exist.
create index service_binding_expiring
    on service_binding (expires_at)
    where expires_at is not null and revoked_at is null and deleted_at is null;
