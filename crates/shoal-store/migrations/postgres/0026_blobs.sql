-- Blobs the server stored or promised to keep, and when last: garbage collection deletes a
-- blob that no recent job, template, plan or live upload names once it has not been used
-- for a grace period.
CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    last_used BIGINT NOT NULL
);
CREATE INDEX blobs_last_used ON blobs (last_used);
