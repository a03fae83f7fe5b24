-- GitHub polling (`[github] poll`): migrations/0006_polling.sql in Postgres. Per repository, the newest
-- deployment id seen by a poll; GitHub's deployment ids exceed 32 bits, hence BIGINT.
CREATE TABLE poll_marks (
    repository TEXT PRIMARY KEY,
    last_deployment_id BIGINT NOT NULL
);
