-- State for OSB 2.15-2.17 features.

-- The plan's maintenance_info.version applied to the instance (set at provision, changed
-- by plan changes and maintenance updates); reported by fetch-instance (2.17).
alter table service_instance add column maintenance_version text;

-- Binding lifetime (plan setting binding_lifetime) and rotation (2.17).
alter table service_binding add column expires_at timestamptz;
alter table service_binding add column predecessor_binding_id text;
