-- migrations/0005_guards.sql in Postgres: BIGINT for integers (ids, counts, flags 0/1), BIGSERIAL for
-- the numbered rows, and `user` quoted (a reserved word in Postgres).

-- The guards: freezes, what zbot itself asked for (grants), lock expiry and watchers, approvals, and
-- what auto-deploy has already said. Times are RFC 3339 in UTC, compared by the caller with its clock.

-- `freeze [<app> in] <env>`: no deploys there until `until` (NULL: until `unfreeze`).
CREATE TABLE freezes (
    id BIGSERIAL PRIMARY KEY,
    -- NULL: that environment of every app.
    app TEXT,
    environment TEXT NOT NULL,
    holder TEXT NOT NULL,
    reason TEXT,
    created_at TEXT NOT NULL,
    until TEXT
);

-- What zbot asked for when it created a deployment, found again through the token it put in the
-- payload (`zbot_grant`): who asked in chat, whether an admin overrode a freeze or window, which
-- approval request it carries out. A payload without a known token is only what GitHub says.
CREATE TABLE grants (
    token TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    environment TEXT NOT NULL,
    actor TEXT NOT NULL,
    override BIGINT NOT NULL DEFAULT 0,
    approval_request BIGINT,
    created_at TEXT NOT NULL
);

-- A lock may end by itself.
ALTER TABLE locks ADD COLUMN expires_at TEXT;

-- `notify me when <env> is free`: told once, when the lock goes.
CREATE TABLE lock_watchers (
    app TEXT NOT NULL,
    environment TEXT NOT NULL,
    "user" TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (app, environment, "user")
);

-- Deploys waiting for approval. Nothing exists on GitHub until one is approved.
CREATE TABLE approval_requests (
    id BIGSERIAL PRIMARY KEY,
    app TEXT NOT NULL,
    environment TEXT NOT NULL,
    git_ref TEXT NOT NULL,
    sha TEXT NOT NULL,
    task TEXT NOT NULL,
    hosts TEXT,
    force BIGINT NOT NULL DEFAULT 0,
    requester TEXT NOT NULL,
    channel TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    -- The message with the buttons, replaced once decided.
    message_ts TEXT,
    needed BIGINT NOT NULL,
    -- waiting | approved | rejected | expired
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    decided_by TEXT,
    decided_at TEXT,
    reason TEXT,
    deployment_id BIGINT
);
CREATE INDEX approval_requests_by_state ON approval_requests (state);

CREATE TABLE approvals (
    request_id BIGINT NOT NULL,
    approver TEXT NOT NULL,
    -- The commit approved: an approval is for one sha.
    sha TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (request_id, approver)
);

-- Why auto-deploy last held back a branch head for an environment, so it is said once, not per push.
CREATE TABLE auto_deploy_held (
    app TEXT NOT NULL,
    environment TEXT NOT NULL,
    reason TEXT NOT NULL,
    said_at TEXT NOT NULL,
    PRIMARY KEY (app, environment)
);

-- The newest green head auto-deploy is waiting to deploy while the environment is busy: several green
-- pushes while one deploy runs collapse into one deploy of the newest.
CREATE TABLE auto_deploy_pending (
    app TEXT NOT NULL,
    environment TEXT NOT NULL,
    sha TEXT NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (app, environment)
);

-- Commits auto-deploy asked GitHub to deploy, so one is never asked for twice (before its webhook
-- has arrived, too).
CREATE TABLE auto_deploys (
    app TEXT NOT NULL,
    environment TEXT NOT NULL,
    sha TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (app, environment, sha)
);
