-- bindery's own state: instances, bindings, operations and the audit trail.
--
-- Conventions: lowercase SQL, singular table names, `{table}_id` keys, created_at and
-- updated_at on every table. Deletion leaves a tombstone (deleted_at set, the finished
-- operation kept) so that a platform repeating a DELETE or polling last_operation after
-- a delete gets the right answer. Ids chosen by the platform are opaque text.

create table service_instance (
    instance_id         text primary key,
    service_id          text not null,
    plan_id             text not null,
    -- validated request parameters (a JSON object); never holds credentials
    parameters          jsonb not null default '{}'::jsonb,
    organization_guid   text,
    space_guid          text,
    context             jsonb,
    dashboard_url       text,
    -- provisioning | ready | failed | deleted
    state               text not null,
    -- the operation that currently owns the instance (provision, update, deprovision);
    -- a conditional update on this column serialises changes across replicas
    active_operation_id uuid,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    deleted_at          timestamptz,
    constraint service_instance_state_check
        check (state in ('provisioning', 'ready', 'failed', 'deleted'))
);

create table service_binding (
    binding_id          text primary key,
    instance_id         text not null references service_instance (instance_id),
    service_id          text not null,
    plan_id             text not null,
    parameters          jsonb not null default '{}'::jsonb,
    app_guid            text,
    route               text,
    bind_resource       jsonb,
    context             jsonb,
    -- AEAD-sealed JSON credentials and the label of the key that sealed them
    credentials         bytea,
    credentials_key     text,
    -- creating | ready | failed | deleted
    state               text not null,
    active_operation_id uuid,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    deleted_at          timestamptz,
    constraint service_binding_state_check
        check (state in ('creating', 'ready', 'failed', 'deleted')),
    constraint service_binding_sealed_check
        check ((credentials is null) = (credentials_key is null))
);

create index service_binding_live_by_instance
    on service_binding (instance_id) where deleted_at is null;

create table operation (
    operation_id     uuid primary key,
    instance_id      text not null,
    binding_id       text,
    -- provision | update | deprovision | bind | unbind
    kind             text not null,
    -- the wire spelling: 'in progress' | 'succeeded' | 'failed'
    state            text not null,
    -- user-facing text; never a stack trace or a credential
    description      text,
    -- what the operation applies (target plan and parameters of an update)
    request          jsonb not null default '{}'::jsonb,
    attempts         integer not null default 0,
    next_attempt_at  timestamptz not null default now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    deadline_at      timestamptz not null,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    finished_at      timestamptz,
    constraint operation_kind_check
        check (kind in ('provision', 'update', 'deprovision', 'bind', 'unbind')),
    constraint operation_state_check
        check (state in ('in progress', 'succeeded', 'failed'))
);

-- the worker's claim query: runnable operations by due time
create index operation_runnable
    on operation (next_attempt_at) where state = 'in progress';
-- last_operation without an operation id: the newest operation of an instance
create index operation_by_instance
    on operation (instance_id, created_at desc);
create index operation_by_binding
    on operation (binding_id, created_at desc) where binding_id is not null;

create table audit_event (
    audit_event_id bigserial primary key,
    occurred_at    timestamptz not null default now(),
    -- provision | update | deprovision | bind | unbind
    action         text not null,
    instance_id    text not null,
    binding_id     text,
    operation_id   uuid,
    -- the HTTP status the request was answered with
    status         integer not null,
    api_version    text not null,
    request_id     text,
    -- decoded X-Broker-API-Originating-Identity; never a credential
    platform       text,
    identity       jsonb
);

create index audit_event_by_instance on audit_event (instance_id, occurred_at);
