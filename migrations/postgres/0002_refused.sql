-- Deployments from GitHub that zbot refused before they were queued (an unconfigured repository, an
-- environment the app does not have, a value that does not validate): recorded so that a redelivery is
-- answered the same way and people can see what was refused and why. Values are kept as text, as sent.
CREATE TABLE refused_deployments (
    deployment_id BIGINT PRIMARY KEY,
    repository TEXT NOT NULL,
    reason TEXT NOT NULL,
    received_at TEXT NOT NULL
);
