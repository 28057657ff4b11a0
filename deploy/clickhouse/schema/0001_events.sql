-- The raw event archive: every event of a known type the projector applied, as the log held it,
-- except decisions: the decisions table keeps every field of a decision event and is their
-- archive (a second copy as JSON would be most of the bytes on disk). Partitioned by month of
-- recorded time, which never decreases along the log, so the newest positions are in the newest
-- partition; ordered for a tenant's events in log order.
CREATE TABLE IF NOT EXISTS whocould.events_local ON CLUSTER whocould (
    tenant      LowCardinality(String),
    position    UInt64 CODEC(Delta, ZSTD),          -- place in the log
    recorded    DateTime('UTC') CODEC(Delta, ZSTD), -- when whocould stored it, for partitioning
    recorded_us Int64 CODEC(Delta, ZSTD),           -- the same, Unix microseconds
    time_us     Int64 CODEC(Delta, ZSTD),           -- event time, Unix microseconds
    source      LowCardinality(String),
    id          String CODEC(ZSTD),
    type        LowCardinality(String),
    event       String CODEC(ZSTD)           -- the CloudEvent, JSON
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/whocould/events_local', '{replica}')
PARTITION BY toYYYYMM(recorded)
ORDER BY (tenant, position);

-- events: what readers and the projector use; it spreads rows over the shards by cityHash64(tenant, position).
CREATE TABLE IF NOT EXISTS whocould.events ON CLUSTER whocould AS whocould.events_local
ENGINE = Distributed(whocould, whocould, events_local, cityHash64(tenant, position));

-- The tenants that have any event, kept by materialized views over the archive and decisions.
CREATE TABLE IF NOT EXISTS whocould.tenants_local ON CLUSTER whocould (
    tenant LowCardinality(String)
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/whocould/tenants_local', '{replica}')
ORDER BY tenant;

-- tenants: what readers use, over tenants_local of every shard (fed by the materialized views there).
CREATE TABLE IF NOT EXISTS whocould.tenants ON CLUSTER whocould AS whocould.tenants_local
ENGINE = Distributed(whocould, whocould, tenants_local);

CREATE MATERIALIZED VIEW IF NOT EXISTS whocould.tenants_mv ON CLUSTER whocould TO whocould.tenants_local AS
SELECT DISTINCT tenant FROM whocould.events_local;
