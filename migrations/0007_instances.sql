-- Several zbot instances on one store (Postgres). SQLite serves one instance, but its columns are the
-- same, so every query is shared (migrations/postgres/0007_instances.sql is this file in Postgres).

-- The instance (`zbot run --instance-id`) running this deployment: only it may end it.
ALTER TABLE deployments ADD COLUMN instance_id TEXT;
-- Unix milliseconds until which that instance's claim holds; it renews it while the deploy runs, and
-- once it has passed another instance ends the deployment.
ALTER TABLE deployments ADD COLUMN lease_until INTEGER;
-- A cancel asked for on another instance than the one running the deploy: the reason, until it stops.
ALTER TABLE deployments ADD COLUMN cancel_reason TEXT;
