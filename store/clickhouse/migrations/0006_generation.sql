{{/* A template (see ../schema.go): rendered for one server, not modern, it is the SQL ClickHouse 18.16 runs. */ -}}
-- Which database holds the store's tables (generation.go): the configured database itself
-- until a rebuild replays the log into a fresh one and records it here. The highest version
-- wins. Every server holds the whole table.
CREATE TABLE IF NOT EXISTS {{name "store_generation"}}{{on_cluster}} (
    version  UInt64,
    database String,
    switched DateTime('UTC')
) ENGINE = {{engine_all "store_generation" "MergeTree"}}
ORDER BY version;
