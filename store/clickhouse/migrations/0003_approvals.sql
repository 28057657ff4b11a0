{{/* A template (see ../schema.go): rendered for one server, not modern, it is the SQL ClickHouse 18.16 runs. */ -}}
-- Approval requests and the answers to them, one row per event, read back per request in log
-- order.
CREATE TABLE IF NOT EXISTS {{local "approvals"}}{{on_cluster}} (
    tenant      {{lc "String"}},
    request     String,
    position    UInt64{{codec "Delta, ZSTD"}},          -- place in the log
    type        {{lc "String"}},          -- approval.requested, approval.granted or approval.rejected
    time_us     Int64{{codec "Delta, ZSTD"}},           -- event time, Unix microseconds
    requester   String,
    approver    String,
    reason      String,
    change      String{{codec "ZSTD"}},          -- the change asked for, JSON
    recorded    DateTime('UTC'){{codec "Delta, ZSTD"}}, -- when whocould stored it, for partitioning
    recorded_us Int64{{codec "Delta, ZSTD"}}
) ENGINE = {{engine "approvals" "MergeTree"}}
PARTITION BY toYYYYMM(recorded)
ORDER BY (tenant, request, position);{{distributed "approvals" "cityHash64(tenant, request)"}}
