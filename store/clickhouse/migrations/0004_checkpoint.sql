{{/* A template (see ../schema.go): rendered for one server, not modern, it is the SQL ClickHouse 18.16 runs. */ -}}
-- The projector's checkpoint. Each write is a new row; the highest version wins (argMax on
-- read, and merges keep only it).
--   position: every record up to here is applied.
--   written:  records up to here may have been written (a crash or a failed insert can leave
--             rows of (position, written]); the store checks that stretch before writing it
--             again, so nothing is ever inserted twice.
CREATE TABLE IF NOT EXISTS {{name "projector_checkpoint"}}{{on_cluster}} (
    name     String,
    version  UInt64,
    position UInt64,
    written  UInt64,
    updated  DateTime('UTC')
) ENGINE = {{engine_all "projector_checkpoint" "ReplacingMergeTree" "version"}}
ORDER BY name;
