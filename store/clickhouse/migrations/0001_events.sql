-- The raw event archive: every event of a known type the projector applied, as the log held it,
-- except decisions: the decisions table keeps every field of a decision event and is their
-- archive (a second copy as JSON would be most of the bytes on disk). Partitioned by month of
-- recorded time, which never decreases along the log, so the newest positions are in the newest
-- partition; ordered for a tenant's events in log order.
CREATE TABLE IF NOT EXISTS events (
    tenant      String,
    position    UInt64,          -- place in the log
    recorded    DateTime('UTC'), -- when whocould stored it, for partitioning
    recorded_us Int64,           -- the same, Unix microseconds
    time_us     Int64,           -- event time, Unix microseconds
    source      String,
    id          String,
    type        String,
    event       String           -- the CloudEvent, JSON
) ENGINE = MergeTree
PARTITION BY toYYYYMM(recorded)
ORDER BY (tenant, position);

-- The tenants that have any event, kept by materialized views over the archive and decisions.
CREATE TABLE IF NOT EXISTS tenants (
    tenant String
) ENGINE = ReplacingMergeTree
ORDER BY tenant;

CREATE MATERIALIZED VIEW IF NOT EXISTS tenants_mv TO tenants AS
SELECT DISTINCT tenant FROM events;
