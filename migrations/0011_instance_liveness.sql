-- Several zbot instances on one store: which instance ids are alive, and reservations that expire.
-- (migrations/postgres/0011_instance_liveness.sql is this file in Postgres.)

-- Each running instance (`zbot run --instance-id`), renewed with its leases: an id whose heartbeat is
-- within the lease belongs to a live instance, and a second instance with that id is refused at start
-- (fencing is keyed on the id). `token` tells this process from an earlier one with the same id.
CREATE TABLE instances (
    instance_id TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    -- Unix milliseconds of the last renewal.
    heartbeat_at INTEGER NOT NULL
);

-- Unix milliseconds when the posting of a status message was reserved (status_ts still ''): a
-- reservation older than a few seconds belongs to an instance that stopped before it posted, and is
-- taken over.
ALTER TABLE chat_messages ADD COLUMN reserved_at INTEGER;
