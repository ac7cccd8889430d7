-- The backend kind of the instance's plan, recorded at provision,
-- so that an instance whose plan or service left the catalog can still be unbound and
-- deprovisioned. Null for rows written before this column: bindery fills it at start-up
-- for plans still offered (docs/decisions.md).
alter table service_instance add column backend_kind text;
