-- 0000_schema_migrations.sql
-- The migrations applied, made by Open before the migrations (migrate.go).
CREATE DATABASE IF NOT EXISTS whocould ON CLUSTER whocould;

CREATE TABLE IF NOT EXISTS whocould.schema_migrations ON CLUSTER whocould (
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime('UTC')
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/whocould/schema_migrations', '{replica}')
ORDER BY version;

-- 0001_events.sql
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

-- 0002_decisions.sql
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

-- 0003_approvals.sql
-- Approval requests and the answers to them, one row per event, read back per request in log
-- order.
CREATE TABLE IF NOT EXISTS whocould.approvals_local ON CLUSTER whocould (
    tenant      LowCardinality(String),
    request     String,
    position    UInt64 CODEC(Delta, ZSTD),          -- place in the log
    type        LowCardinality(String),          -- approval.requested, approval.granted or approval.rejected
    time_us     Int64 CODEC(Delta, ZSTD),           -- event time, Unix microseconds
    requester   String,
    approver    String,
    reason      String,
    change      String CODEC(ZSTD),          -- the change asked for, JSON
    recorded    DateTime('UTC') CODEC(Delta, ZSTD), -- when whocould stored it, for partitioning
    recorded_us Int64 CODEC(Delta, ZSTD)
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/whocould/approvals_local', '{replica}')
PARTITION BY toYYYYMM(recorded)
ORDER BY (tenant, request, position);

-- approvals: what readers and the projector use; it spreads rows over the shards by cityHash64(tenant, request).
CREATE TABLE IF NOT EXISTS whocould.approvals ON CLUSTER whocould AS whocould.approvals_local
ENGINE = Distributed(whocould, whocould, approvals_local, cityHash64(tenant, request));

-- 0004_checkpoint.sql
-- The projector's checkpoint. Each write is a new row; the highest version wins (argMax on
-- read, and merges keep only it).
--   position: every record up to here is applied.
--   written:  records up to here may have been written (a crash or a failed insert can leave
--             rows of (position, written]); the store checks that stretch before writing it
--             again, so nothing is ever inserted twice.
CREATE TABLE IF NOT EXISTS whocould.projector_checkpoint ON CLUSTER whocould (
    name     String,
    version  UInt64,
    position UInt64,
    written  UInt64,
    updated  DateTime('UTC')
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/whocould/projector_checkpoint', '{replica}', version)
ORDER BY name;

-- 0005_access_map.sql
-- The permission map, by its parts (graph/relexport.go), which the questions join (mapread.go).
-- Each part is found by lookup, so each part asked for by two keys is written twice:
--   kind 1, a principal's status:      lookup and id the principal, status;
--   kind 2, a membership chain:        lookup its last group, id the principal, path the groups
--                                      from it outwards, ref the last;
--   kind 5, the same chain:            lookup the principal;
--   kind 3, a grant's interval:        scope its resource, lookup and ref its role (is_role 1)
--                                      or action, id the subject, expires_us, end_reason;
--   kind 6, the same interval:         lookup the subject (and scope empty);
--   kind 4, a role's tail:             lookup and ref the permission the chain's last role
--                                      holds, id the role, path the inclusion chain from it;
--   kind 7, the same tail:             lookup the role;
-- each holding over [from_us, to_us).
-- Bitemporal: each row is a change of what the map holds, made by the records recorded at
-- known_us, up to log position version: present 1 adds the row from then on, present 0 takes it
-- away. The map as known at K is, for each (kind, id, key), the row of the highest version with
-- known_us <= K, when that row is present (mapwrite.go).
CREATE TABLE IF NOT EXISTS whocould.access_map_local ON CLUSTER whocould (
    tenant      LowCardinality(String),
    kind        UInt8,
    scope       String,         -- kind 3: the grant's resource; else empty
    lookup      String,
    id          String,
    key         UInt64,         -- a hash of the row's content: what identifies it over versions
    ref         String,
    resource    String,
    from_us     Int64,          -- the row holds over [from_us, to_us), Unix microseconds
    to_us       Int64,          -- 9223372036854775807: has not ended
    path        Array(String),
    status      LowCardinality(String),
    is_role     UInt8,
    expires_us  Int64,          -- 0: none
    end_reason  UInt8,          -- graph.End
    known_us    Int64 CODEC(Delta, ZSTD), -- recorded time of the records that made the change
    version     UInt64 CODEC(Delta, ZSTD), -- log position of the last of them
    seq         UInt32,         -- the row's place among the changes of its version
    present     UInt8
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/whocould/access_map_local', '{replica}')
ORDER BY (tenant, kind, scope, lookup, id, key, version)
SETTINGS index_granularity = 1024;

-- access_map: what readers and the projector use; it spreads rows over the shards by cityHash64(tenant, kind, id).
CREATE TABLE IF NOT EXISTS whocould.access_map ON CLUSTER whocould AS whocould.access_map_local
ENGINE = Distributed(whocould, whocould, access_map_local, cityHash64(tenant, kind, id));

-- 0006_generation.sql
-- Which database holds the store's tables (generation.go): the configured database itself
-- until a rebuild replays the log into a fresh one and records it here. The highest version
-- wins. Every server holds the whole table.
CREATE TABLE IF NOT EXISTS whocould.store_generation ON CLUSTER whocould (
    version  UInt64,
    database String,
    switched DateTime('UTC')
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/whocould/store_generation', '{replica}')
ORDER BY version;

-- 0007_findings.sql
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
