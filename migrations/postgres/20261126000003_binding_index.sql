-- The partial index on live bindings by instance could be scanned whole to find one
-- binding by id: with statistics taken while the table was small, the planner costs
-- both indexes alike and sometimes picks it (the benchmark's unbind went from 0.4 to
-- 4-6 ms of database CPU, docs/benchmarks.md). A plain index on instance_id serves the
-- same queries (they also filter on deleted_at) and offers no such path.
drop index service_binding_live_by_instance;
create index service_binding_by_instance on service_binding (instance_id);
