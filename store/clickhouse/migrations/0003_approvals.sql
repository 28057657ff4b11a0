-- Approval requests and the answers to them, one row per event, read back per request in log
-- order.
CREATE TABLE IF NOT EXISTS approvals (
    tenant      String,
    request     String,
    position    UInt64,          -- place in the log
    type        String,          -- approval.requested, approval.granted or approval.rejected
    time_us     Int64,           -- event time, Unix microseconds
    requester   String,
    approver    String,
    reason      String,
    change      String,          -- the change asked for, JSON
    recorded    DateTime('UTC'), -- when whocould stored it, for partitioning
    recorded_us Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(recorded)
ORDER BY (tenant, request, position);
