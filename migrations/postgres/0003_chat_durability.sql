-- What the chat side must remember across restarts.

-- Chat events already handled: Slack's event id, and the channel + ts of a message (one mention arrives
-- both as `app_mention` and as `message`), so an event Slack redelivers after a restart is handled once.
-- Slack stops redelivering within minutes; rows older than an hour are pruned as new ones arrive.
CREATE TABLE chat_events_seen (
    key TEXT PRIMARY KEY,
    -- Unix seconds: an integer, so that expiry is a comparison.
    seen_at BIGINT NOT NULL
);
CREATE INDEX chat_events_seen_by_time ON chat_events_seen (seen_at);

-- When the reply that tells how the deployment ended was posted in its thread; NULL: not yet, and zbot
-- posts it at its next start.
ALTER TABLE chat_messages ADD COLUMN outcome_posted_at TEXT;

-- Deployments that ended before this column existed count as answered, so an upgrade repeats no outcome.
UPDATE chat_messages
SET outcome_posted_at = (
    SELECT finished_at FROM deployments WHERE deployments.deployment_id = chat_messages.deployment_id
)
WHERE deployment_id IN (
    SELECT deployment_id FROM deployments WHERE state IN ('success', 'failure', 'error')
);
