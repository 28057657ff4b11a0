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
