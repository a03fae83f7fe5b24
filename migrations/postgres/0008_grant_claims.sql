-- Grants as claims: each is bound to what zbot asked for (repository, environment, task, and the commit
-- when zbot knew it), kept only as a SHA-256 digest of its token, ends at `expires_at` unless claimed,
-- and is claimed once, by one deployment id (a conditional UPDATE). Grants made before this change
-- kept their token in clear: they are dropped, so a deployment still carrying one runs as its GitHub
-- creator.
DROP TABLE grants;
CREATE TABLE grants (
    -- hex SHA-256 of the payload's `zbot_grant` token.
    token_hash TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    repository TEXT NOT NULL,
    environment TEXT NOT NULL,
    task TEXT NOT NULL,
    -- NULL: the ref was handed to GitHub to resolve; the commit is bound when the grant is claimed.
    sha TEXT,
    actor TEXT NOT NULL,
    override BIGINT NOT NULL DEFAULT 0,
    approval_request BIGINT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    -- The one deployment that claimed it.
    deployment_id BIGINT,
    claimed_at TEXT
);
