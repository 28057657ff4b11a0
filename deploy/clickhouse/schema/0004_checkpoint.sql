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
