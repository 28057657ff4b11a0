-- Which database holds the store's tables (generation.go): the configured database itself
-- until a rebuild replays the log into a fresh one and records it here. The highest version
-- wins. Every server holds the whole table.
CREATE TABLE IF NOT EXISTS whocould.store_generation ON CLUSTER whocould (
    version  UInt64,
    database String,
    switched DateTime('UTC')
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/whocould/store_generation', '{replica}')
ORDER BY version;
