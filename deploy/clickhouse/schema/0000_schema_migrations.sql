-- The migrations applied, made by Open before the migrations (migrate.go).
CREATE DATABASE IF NOT EXISTS whocould ON CLUSTER whocould;

CREATE TABLE IF NOT EXISTS whocould.schema_migrations ON CLUSTER whocould (
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime('UTC')
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/whocould/schema_migrations', '{replica}')
ORDER BY version;
