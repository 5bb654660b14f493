-- File steps: what a file step places on its targets (JSON: target directory, mode, limits,
-- and each file's blob, size, name and source), NULL on other steps.
ALTER TABLE step_instances ADD COLUMN transfer TEXT;

-- Local uploads (generate_local_file_upload_url): a slot per file, named by the path the
-- caller later puts in fast_transfer_file, filled by one PUT to its upload URL.
CREATE TABLE file_uploads (
    path TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    creator TEXT NOT NULL,
    blob TEXT,
    size BIGINT,
    create_time BIGINT NOT NULL,
    expire_time BIGINT NOT NULL
);
