{{/* A template (see ../schema.go): rendered for one server, not modern, it is the SQL ClickHouse 18.16 runs. */ -}}
-- The permission map, by its parts (graph/relexport.go), which the questions join (mapread.go).
-- Each part is found by lookup, so each part asked for by two keys is written twice:
--   kind 1, a principal's status:      lookup and id the principal, status;
--   kind 2, a membership chain:        lookup its last group, id the principal, path the groups
--                                      from it outwards, ref the last;
--   kind 5, the same chain:            lookup the principal;
--   kind 3, a grant's interval:        scope its resource, lookup and ref its role (is_role 1)
--                                      or action, id the subject, expires_us, end_reason;
--   kind 6, the same interval:         lookup the subject (and scope empty);
--   kind 4, a role's tail:             lookup and ref the permission the chain's last role
--                                      holds, id the role, path the inclusion chain from it;
--   kind 7, the same tail:             lookup the role;
-- each holding over [from_us, to_us).
-- Bitemporal: each row is a change of what the map holds, made by the records recorded at
-- known_us, up to log position version: present 1 adds the row from then on, present 0 takes it
-- away. The map as known at K is, for each (kind, id, key), the row of the highest version with
-- known_us <= K, when that row is present (mapwrite.go).
CREATE TABLE IF NOT EXISTS {{local "access_map"}}{{on_cluster}} (
    tenant      {{lc "String"}},
    kind        UInt8,
    scope       String,         -- kind 3: the grant's resource; else empty
    lookup      String,
    id          String,
    key         UInt64,         -- a hash of the row's content: what identifies it over versions
    ref         String,
    resource    String,
    from_us     Int64,          -- the row holds over [from_us, to_us), Unix microseconds
    to_us       Int64,          -- 9223372036854775807: has not ended
    path        Array(String),
    status      {{lc "String"}},
    is_role     UInt8,
    expires_us  Int64,          -- 0: none
    end_reason  UInt8,          -- graph.End
    known_us    Int64{{codec "Delta, ZSTD"}}, -- recorded time of the records that made the change
    version     UInt64{{codec "Delta, ZSTD"}}, -- log position of the last of them
    seq         UInt32,         -- the row's place among the changes of its version
    present     UInt8
) ENGINE = {{engine "access_map" "MergeTree"}}
ORDER BY (tenant, kind, scope, lookup, id, key, version)
SETTINGS index_granularity = 1024;{{distributed "access_map" "cityHash64(tenant, kind, id)"}}
