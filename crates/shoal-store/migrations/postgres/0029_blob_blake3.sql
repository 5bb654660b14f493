-- The BLAKE3 of a blob's bytes, computed in the pass that named it by its SHA-256: targets
-- check a download from the server against it (a fraction of SHA-256's cost). NULL for
-- blobs found in the store rather than stored through this server.
ALTER TABLE blobs ADD COLUMN blake3 TEXT;
