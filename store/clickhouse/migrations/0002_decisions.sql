{{/* A template (see ../schema.go): rendered for one server, not modern, it is the SQL ClickHouse 18.16 runs. */ -}}
-- Enforcement points' decisions. Partitioned by month of event time (retention drops whole
-- months); ordered by principal and time, so "what did this principal do between From and To" reads
-- one key range, and (time, position) makes each decision's key unique.
CREATE TABLE IF NOT EXISTS {{local "decisions"}}{{on_cluster}} (
    tenant      {{lc "String"}},
    date        Date,    -- of event time (UTC), for partitioning
    time_us     Int64{{codec "Delta, ZSTD"}},   -- event time, Unix microseconds
    position    UInt64{{codec "ZSTD"}},  -- place in the log
    principal   String,
    action      {{lc "String"}},
    resource    String{{codec "ZSTD"}},
    allow       UInt8,   -- 1: allow, 0: deny
    reason      {{lc "String"}},
    policy      {{lc "String"}},
    request     String{{codec "ZSTD"}},
    source      {{lc "String"}},
    id          String{{codec "ZSTD"}},
    recorded_us Int64{{codec "Delta, ZSTD"}}    -- when whocould stored it, Unix microseconds
) ENGINE = {{engine "decisions" "MergeTree"}}
PARTITION BY toYYYYMM(date)
ORDER BY (tenant, principal, time_us, position){{ttl "date" .Retention.Decisions}};{{distributed "decisions" "cityHash64(tenant, principal)"}}

-- Allowed use of each (principal, action, resource): first and last use and how often. Kept by
-- a materialized view over every block inserted into decisions; read with the -Merge functions.
-- It stays exact because no decision is ever inserted twice (see Store.Apply).
CREATE TABLE IF NOT EXISTS {{local "usage"}}{{on_cluster}} (
    tenant    {{lc "String"}},
    principal String,
    action    {{lc "String"}},
    resource  String,
    first_us  AggregateFunction(min, Int64),
    last_us   AggregateFunction(max, Int64),
    uses      AggregateFunction(count)
) ENGINE = {{engine "usage" "AggregatingMergeTree"}}
ORDER BY (tenant, principal, action, resource);{{distributed "usage" ""}}

CREATE MATERIALIZED VIEW IF NOT EXISTS {{name "usage_mv"}}{{on_cluster}} TO {{local "usage"}} AS
SELECT tenant, principal, action, resource,
       minState(time_us) AS first_us, maxState(time_us) AS last_us, countState() AS uses
FROM {{local "decisions"}}
WHERE allow = 1
GROUP BY tenant, principal, action, resource;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{name "tenants_decisions_mv"}}{{on_cluster}} TO {{local "tenants"}} AS
SELECT DISTINCT tenant FROM {{local "decisions"}};
