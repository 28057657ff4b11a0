-- Enforcement points' decisions. Partitioned by month of event time (retention drops whole
-- months); ordered by principal and time, so "what did this principal do between From and To" reads
-- one key range, and (time, position) makes each decision's key unique.
CREATE TABLE IF NOT EXISTS decisions (
    tenant      String,
    date        Date,    -- of event time (UTC), for partitioning
    time_us     Int64,   -- event time, Unix microseconds
    position    UInt64,  -- place in the log
    principal   String,
    action      String,
    resource    String,
    allow       UInt8,   -- 1: allow, 0: deny
    reason      String,
    policy      String,
    request     String,
    source      String,
    id          String,
    recorded_us Int64    -- when whocould stored it, Unix microseconds
) ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (tenant, principal, time_us, position);

-- Allowed use of each (principal, action, resource): first and last use and how often. Kept by
-- a materialized view over every block inserted into decisions; read with the -Merge functions.
-- It stays exact because no decision is ever inserted twice (see Store.Apply).
CREATE TABLE IF NOT EXISTS usage (
    tenant    String,
    principal String,
    action    String,
    resource  String,
    first_us  AggregateFunction(min, Int64),
    last_us   AggregateFunction(max, Int64),
    uses      AggregateFunction(count)
) ENGINE = AggregatingMergeTree
ORDER BY (tenant, principal, action, resource);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_mv TO usage AS
SELECT tenant, principal, action, resource,
       minState(time_us) AS first_us, maxState(time_us) AS last_us, countState() AS uses
FROM decisions
WHERE allow = 1
GROUP BY tenant, principal, action, resource;

CREATE MATERIALIZED VIEW IF NOT EXISTS tenants_decisions_mv TO tenants AS
SELECT DISTINCT tenant FROM decisions;
