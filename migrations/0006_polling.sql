-- GitHub polling (`[github] poll`): per repository, the newest deployment id seen by a poll. A poll takes
-- only deployments newer than it, so the first poll of a repository starts from what is there and
-- does not run its history; deployments made while zbot was stopped are newer, and are taken.
CREATE TABLE poll_marks (
    repository TEXT PRIMARY KEY,
    last_deployment_id INTEGER NOT NULL
);
