-- Enforcement points' decisions. Partitioned by month of event time (retention drops whole
-- months); ordered by principal and time, so "what did this principal do between From and To" reads
-- one key range, and (time, position) makes each decision's key unique.
CREATE TABLE IF NOT EXISTS whocould.decisions_local ON CLUSTER whocould (
    tenant      LowCardinality(String),
    date        Date,    -- of event time (UTC), for partitioning
    time_us     Int64 CODEC(Delta, ZSTD),   -- event time, Unix microseconds
    position    UInt64 CODEC(ZSTD),  -- place in the log
    principal   String,
    action      LowCardinality(String),
    resource    String CODEC(ZSTD),
    allow       UInt8,   -- 1: allow, 0: deny
    reason      LowCardinality(String),
    policy      LowCardinality(String),
    request     String CODEC(ZSTD),
    source      LowCardinality(String),
    id          String CODEC(ZSTD),
    recorded_us Int64 CODEC(Delta, ZSTD)    -- when whocould stored it, Unix microseconds
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/whocould/decisions_local', '{replica}')
PARTITION BY toYYYYMM(date)
ORDER BY (tenant, principal, time_us, position)
TTL date + INTERVAL 2557 DAY
SETTINGS ttl_only_drop_parts = 1;

-- decisions: what readers and the projector use; it spreads rows over the shards by cityHash64(tenant, principal).
CREATE TABLE IF NOT EXISTS whocould.decisions ON CLUSTER whocould AS whocould.decisions_local
ENGINE = Distributed(whocould, whocould, decisions_local, cityHash64(tenant, principal));

-- Allowed use of each (principal, action, resource): first and last use and how often. Kept by
-- a materialized view over every block inserted into decisions; read with the -Merge functions.
-- It stays exact because no decision is ever inserted twice (see Store.Apply).
CREATE TABLE IF NOT EXISTS whocould.usage_local ON CLUSTER whocould (
    tenant    LowCardinality(String),
    principal String,
    action    LowCardinality(String),
    resource  String,
    first_us  AggregateFunction(min, Int64),
    last_us   AggregateFunction(max, Int64),
    uses      AggregateFunction(count)
) ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/whocould/usage_local', '{replica}')
ORDER BY (tenant, principal, action, resource);

-- usage: what readers use, over usage_local of every shard (fed by the materialized views there).
CREATE TABLE IF NOT EXISTS whocould.usage ON CLUSTER whocould AS whocould.usage_local
ENGINE = Distributed(whocould, whocould, usage_local);

CREATE MATERIALIZED VIEW IF NOT EXISTS whocould.usage_mv ON CLUSTER whocould TO whocould.usage_local AS
SELECT tenant, principal, action, resource,
       minState(time_us) AS first_us, maxState(time_us) AS last_us, countState() AS uses
FROM whocould.decisions_local
WHERE allow = 1
GROUP BY tenant, principal, action, resource;

CREATE MATERIALIZED VIEW IF NOT EXISTS whocould.tenants_decisions_mv ON CLUSTER whocould TO whocould.tenants_local AS
SELECT DISTINCT tenant FROM whocould.decisions_local;
