-- Fenced leases (issue 19): every claim of an operation writes a token of its own,
-- and every renewal, retry, release and outcome must present it, so a superseded run
-- of the same process (which shares the owner name) can never write.
alter table operation add column lease_token uuid;

-- A delete that superseded a running create waits for that run to stop: the
-- superseded operation's id. The wait ends when its lease is released, expires, or
-- its owner process is known to be gone.
alter table operation add column waits_for uuid;

-- One row per broker process: it promises to refresh `alive_until` before that time
-- passes, and sets it to the past when it stops. An operation leased by a
-- process whose promise has lapsed is taken over without waiting out the lease. A
-- lease owner without a row (a tool, an older version) is judged by its lease alone.
create table broker_process (
    owner       text primary key,
    alive_until timestamptz not null
);
