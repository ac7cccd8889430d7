-- Facts an `exec` adapter returned about an instance (migrations/postgres, same file name).
alter table service_instance add column backend_facts text check (backend_facts is null or json_valid(backend_facts));
