-- The backend kind of the instance's plan (migrations/postgres, same file name).
alter table service_instance add column backend_kind text;
