-- The analyzers' findings (store.FindingWriter), with their lifecycle. Each write of a finding is
-- a new row; the highest version wins (FINAL on read; merges keep only it). The finding itself is
-- the JSON; the other columns are what dashboards filter and group by.
-- Findings are not rebuilt from the log, so the store keeps them in the catalog database (the
-- configured one), whose own tables a rebuild never replaces nor drops (generation.go): every
-- generation's database has this table too, made by the same migrations, and leaves it empty.
-- Every server holds the whole table.
CREATE TABLE IF NOT EXISTS whocould.findings ON CLUSTER whocould (
    tenant    LowCardinality(String),
    id        String,
    version   UInt64,                -- when it was written, Unix nanoseconds, made to increase
    rule      LowCardinality(String),
    kind      LowCardinality(String),
    severity  LowCardinality(String),
    status    LowCardinality(String),
    principal String,
    resource  String,
    since     DateTime('UTC'),       -- when the condition began (event time)
    updated   DateTime('UTC'),       -- when it was written
    finding   String CODEC(ZSTD)                 -- the finding, JSON
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/whocould/findings', '{replica}', version)
ORDER BY (tenant, id);
