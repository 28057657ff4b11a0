{{/* A template (see ../schema.go): rendered for one server, not modern, it is the SQL ClickHouse 18.16 runs. */ -}}
-- The permission map: for every principal, its status over time, the paths it held and when
-- (whatever its status), and when an entitlement had more paths than an answer lists (see
-- graph.Export and mapwrite.go). Bitemporal: each row is a change of what the map holds, made by
-- the records recorded at known_us, up to log position version: present 1 adds the row from
-- then on, present 0 takes it away. The map as known at K is, for each (principal, key), the
-- row of the highest version with known_us <= K, when that row is present.
-- Ordered for who-could (a few resources and action patterns at a time) and for the status
-- of the principals it finds (kind 1, resource and action empty, by principal).
CREATE TABLE IF NOT EXISTS {{local "access_map"}}{{on_cluster}} (
    tenant           {{lc "String"}},
    kind             UInt8,        -- 0: a path, 1: a status, 2: an entitlement with paths left out
    resource         String,       -- the grant's resource ('' for a status)
    action           {{lc "String"}}, -- the permission, an action pattern ('' for a status)
    principal        String,
    key              UInt64,       -- a hash of the row's content: what identifies it over versions
    from_us          Int64,        -- the row holds over [from_us, to_us), Unix microseconds
    to_us            Int64,        -- 9223372036854775807: has not ended
    status           {{lc "String"}}, -- kind 1: active, disabled or deleted
    groups           Array(String), -- kind 0: the membership chain from the principal outwards
    grant_subject    String,
    grant_role       String,
    grant_action     String,
    grant_expires_us Int64,        -- 0: none
    roles            Array(String), -- the inclusion chain from the granted role
    known_us         Int64{{codec "Delta, ZSTD"}}, -- recorded time of the records that made the change
    version          UInt64{{codec "Delta, ZSTD"}}, -- log position of the last of them
    seq              UInt32,       -- the row's place among the changes of its version
    present          UInt8
) ENGINE = {{engine "access_map" "MergeTree"}}
ORDER BY (tenant, kind, resource, action, principal, key, version);{{distributed "access_map" "cityHash64(tenant, principal)"}}
