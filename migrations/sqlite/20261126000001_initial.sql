-- bindery's own state in a SQLite file: the tables, checks and indexes of
-- migrations/postgres (both of its files so far), in SQLite's types. A change to one
-- schema needs the same change to the other.
--
-- Representations (docs/decisions.md):
-- * platform ids are opaque text, as in PostgreSQL;
-- * uuids are text in the lowercase hyphenated form (checked), so that every statement
--   binds and compares the same 36 characters;
-- * JSON is text, checked with json_valid;
-- * timestamps are INTEGER microseconds since the Unix epoch (UTC), PostgreSQL's own
--   precision: they compare as numbers and copy between the stores without loss. bindery
--   computes them; SQLite's clock functions are never used.
-- * STRICT tables refuse a value of the wrong type instead of storing it.
-- No column has a time default: every statement binds the time it means.

create table service_instance (
    instance_id         text primary key not null,
    service_id          text not null,
    plan_id             text not null,
    -- validated request parameters (a JSON object); never holds credentials
    parameters          text not null default '{}' check (json_valid(parameters)),
    organization_guid   text,
    space_guid          text,
    context             text check (context is null or json_valid(context)),
    dashboard_url       text,
    -- provisioning | ready | failed | deleted
    state               text not null,
    -- the operation that currently owns the instance (provision, update, deprovision)
    active_operation_id text check (active_operation_id is null or
        (length(active_operation_id) = 36 and active_operation_id = lower(active_operation_id))),
    created_at          integer not null,
    updated_at          integer not null,
    deleted_at          integer,
    -- the plan's maintenance_info.version applied to the instance (2.17)
    maintenance_version text,
    constraint service_instance_state_check
        check (state in ('provisioning', 'ready', 'failed', 'deleted'))
) strict;

create table service_binding (
    binding_id             text primary key not null,
    instance_id            text not null references service_instance (instance_id),
    service_id             text not null,
    plan_id                text not null,
    parameters             text not null default '{}' check (json_valid(parameters)),
    app_guid               text,
    route                  text,
    bind_resource          text check (bind_resource is null or json_valid(bind_resource)),
    context                text check (context is null or json_valid(context)),
    -- AEAD-sealed JSON credentials and the label of the key that sealed them
    credentials            blob,
    credentials_key        text,
    -- creating | ready | failed | deleted
    state                  text not null,
    active_operation_id    text check (active_operation_id is null or
        (length(active_operation_id) = 36 and active_operation_id = lower(active_operation_id))),
    created_at             integer not null,
    updated_at             integer not null,
    deleted_at             integer,
    -- binding lifetime and rotation (2.17)
    expires_at             integer,
    predecessor_binding_id text,
    constraint service_binding_state_check
        check (state in ('creating', 'ready', 'failed', 'deleted')),
    constraint service_binding_sealed_check
        check ((credentials is null) = (credentials_key is null))
) strict;

create index service_binding_live_by_instance
    on service_binding (instance_id) where deleted_at is null;

create table operation (
    operation_id     text primary key not null check (
        length(operation_id) = 36 and operation_id = lower(operation_id)),
    instance_id      text not null,
    binding_id       text,
    -- provision | update | deprovision | bind | unbind
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
    constraint operation_kind_check
        check (kind in ('provision', 'update', 'deprovision', 'bind', 'unbind')),
    constraint operation_state_check
        check (state in ('in progress', 'succeeded', 'failed'))
) strict;

-- the worker's claim query: runnable operations by due time
create index operation_runnable
    on operation (next_attempt_at) where state = 'in progress';
-- last_operation without an operation id: the newest operation of an instance
create index operation_by_instance
    on operation (instance_id, created_at desc);
create index operation_by_binding
    on operation (binding_id, created_at desc) where binding_id is not null;

create table audit_event (
    audit_event_id integer primary key autoincrement,
    occurred_at    integer not null,
    -- provision | update | deprovision | bind | unbind
    action         text not null,
    instance_id    text not null,
    binding_id     text,
    operation_id   text check (operation_id is null or
        (length(operation_id) = 36 and operation_id = lower(operation_id))),
    -- the HTTP status the request was answered with
    status         integer not null,
    api_version    text not null,
    request_id     text,
    -- decoded X-Broker-API-Originating-Identity; never a credential
    platform       text,
    identity       text check (identity is null or json_valid(identity))
) strict;

create index audit_event_by_instance on audit_event (instance_id, occurred_at);
