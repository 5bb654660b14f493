-- Names of a business's sets and modules (agents report only their ids): what `shoal host
-- list` and the hosts API show beside the ids. Unnamed ones stay ids.

CREATE TABLE topo_names (
    bk_biz_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    id BIGINT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (bk_biz_id, kind, id)
);
