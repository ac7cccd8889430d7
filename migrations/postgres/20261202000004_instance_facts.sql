-- Facts an `exec` adapter returned about an instance (docs/adapters.md): a JSON object
-- handed back to the adapter in every later request. Never a secret (the contract
-- says so); null when the backend keeps none.
alter table service_instance add column backend_facts jsonb;
