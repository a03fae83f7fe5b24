-- zbot's state, in Postgres: the same tables as migrations/0001_initial.sql (SQLite), column for column.

-- Every GitHub deployment zbot accepted, from the moment its webhook was answered 202 to its end.
CREATE TABLE deployments (
    -- Order of arrival: the queue is served in this order.
    seq BIGSERIAL PRIMARY KEY,
    -- GitHub's deployment id: one row, so one run, per deployment however often it is delivered.
    deployment_id BIGINT NOT NULL UNIQUE,
    app TEXT NOT NULL,
    repository TEXT NOT NULL,
    clone_url TEXT NOT NULL,
    environment TEXT NOT NULL,
    git_ref TEXT NOT NULL,
    sha TEXT NOT NULL,
    task TEXT NOT NULL,
    -- The deployment's payload as JSON (hubot-deploy/Heaven compatible: name, notify, config, hosts).
    payload TEXT NOT NULL,
    -- Who asked: the chat user from the payload, else the GitHub login that created the deployment.
    actor TEXT NOT NULL,
    -- queued | running | success | failure | error
    state TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    -- The last queue position announced while waiting, so a new one is only posted when it changes.
    queue_position BIGINT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    exit_code BIGINT,
    -- The deploy's process group while it runs, so a restarted zbot can stop what a crash left behind.
    process_group BIGINT,
    log_path TEXT,
    gist_id TEXT,
    log_url TEXT
);
CREATE INDEX deployments_by_state ON deployments (state, repository, environment);

-- Webhook deliveries already handled (X-GitHub-Delivery), so a replay does nothing.
CREATE TABLE deliveries (
    delivery_id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    received_at TEXT NOT NULL
);

-- Environment locks: while one exists, only its holder deploys there.
CREATE TABLE locks (
    app TEXT NOT NULL,
    environment TEXT NOT NULL,
    holder TEXT NOT NULL,
    reason TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (app, environment)
);

-- The chat message that shows a deployment's status, kept current as the deployment moves.
CREATE TABLE chat_messages (
    deployment_id BIGINT PRIMARY KEY,
    channel TEXT NOT NULL,
    thread_ts TEXT NOT NULL,
    status_ts TEXT NOT NULL
);
