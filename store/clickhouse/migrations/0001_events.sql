{{/* A template (see ../schema.go): rendered for one server, not modern, it is the SQL ClickHouse 18.16 runs. */ -}}
-- The raw event archive: every event of a known type the projector applied, as the log held it,
-- except decisions: the decisions table keeps every field of a decision event and is their
-- archive (a second copy as JSON would be most of the bytes on disk). Partitioned by month of
-- recorded time, which never decreases along the log, so the newest positions are in the newest
-- partition; ordered for a tenant's events in log order.
CREATE TABLE IF NOT EXISTS {{local "events"}}{{on_cluster}} (
    tenant      {{lc "String"}},
    position    UInt64{{codec "Delta, ZSTD"}},          -- place in the log
    recorded    DateTime('UTC'){{codec "Delta, ZSTD"}}, -- when whocould stored it, for partitioning
    recorded_us Int64{{codec "Delta, ZSTD"}},           -- the same, Unix microseconds
    time_us     Int64{{codec "Delta, ZSTD"}},           -- event time, Unix microseconds
    source      {{lc "String"}},
    id          String{{codec "ZSTD"}},
    type        {{lc "String"}},
    event       String{{codec "ZSTD"}}           -- the CloudEvent, JSON
) ENGINE = {{engine "events" "MergeTree"}}
PARTITION BY toYYYYMM(recorded)
ORDER BY (tenant, position);{{distributed "events" "cityHash64(tenant, position)"}}

-- The tenants that have any event, kept by materialized views over the archive and decisions.
CREATE TABLE IF NOT EXISTS {{local "tenants"}}{{on_cluster}} (
    tenant {{lc "String"}}
) ENGINE = {{engine "tenants" "ReplacingMergeTree"}}
ORDER BY tenant;{{distributed "tenants" ""}}

CREATE MATERIALIZED VIEW IF NOT EXISTS {{name "tenants_mv"}}{{on_cluster}} TO {{local "tenants"}} AS
SELECT DISTINCT tenant FROM {{local "events"}};
