package clickhouse

// The queries, with ? parameters (bound by the driver). Inserts are PrepareBatch with an
// explicit column list (rows.go): ClickHouse 18.16 sends no columns to an INSERT without one,
// and hangs on INSERT ... VALUES sent as text.
const (
	qCheckpoint = `SELECT max(version), argMax(position, version), argMax(written, version)
FROM projector_checkpoint WHERE name = ?`

	// Positions already stored in a stretch of the log, narrowed to the partitions the rows to
	// write fall in.
	qWrittenEvents    = `SELECT position FROM events WHERE recorded >= toDateTime(?) AND position > ? AND position <= ?`
	qWrittenApprovals = `SELECT position FROM approvals WHERE recorded >= toDateTime(?) AND position > ? AND position <= ?`
	qWrittenDecisions = `SELECT position FROM decisions WHERE date >= toDate(?) AND date <= toDate(?) AND position > ? AND position <= ?`

	// Inserts of this store still running on the server (one whose client gave up may still
	// be writing).
	qRunningInserts = `SELECT count() FROM system.processes WHERE position(query_id, ?) = 1`

	// The decisions, and their use, continued by decisionsWhere.
	qDecisions = `SELECT principal, action, resource, allow, time_us, reason, policy, request, source, id, position
FROM decisions
WHERE`
	qDecisionsOrder = `
ORDER BY time_us, position`

	qUsage = `SELECT principal, action, resource, minMerge(first_us), maxMerge(last_us), countMerge(uses)
FROM usage
WHERE tenant = ?`
	// Every use of a tenant, merged as the table's parts are read (FINAL, in key order on one
	// server: see Usage), without a GROUP BY's hash table and sort.
	qUsageFinal = `SELECT principal, action, resource, finalizeAggregation(first_us), finalizeAggregation(last_us),
  finalizeAggregation(uses)
FROM usage FINAL
WHERE tenant = ?`
	qUsageOfDecisions = `SELECT principal, action, resource, min(time_us), max(time_us), count()
FROM decisions
WHERE`
	qUsageGroup = `
GROUP BY principal, action, resource
ORDER BY principal, action, resource`

	qApproval = `SELECT type, time_us, requester, approver, reason, change
FROM approvals
WHERE tenant = ? AND request = ?
ORDER BY position`

	qTenants = `SELECT DISTINCT tenant FROM tenants ORDER BY tenant`

	// The events archived up to a position, of the types listed (%s), in log order (readArchive
	// may add a tenant between the two).
	qArchived      = `SELECT position, recorded_us, event FROM events WHERE position <= ? AND type IN (%s)`
	qArchivedOrder = ` ORDER BY position`

	// A tenant's findings in the catalog database (%s): the newest row of each.
	qFindings      = `SELECT finding FROM %s.findings FINAL WHERE tenant = ? ORDER BY id`
	findingColumns = "tenant, id, version, rule, kind, severity, status, principal, resource, since, updated, finding"

	// The permission map's rows a failed Apply may have left, and the deletions of them the
	// server has not done yet.
	qMapRowsAfter     = `SELECT count() FROM access_map WHERE version > ?`
	qMutationsRunning = `SELECT count() FROM system.mutations WHERE database = ? AND table = ? AND is_done = 0`

	// The permission map's parts as known at a time: for each (kind, id, key), the row of the
	// highest version, when it is present. %s: the filter (whose bounds the rows of one key
	// share, so it may come before the grouping), and the known-at bound.
	qMap = `SELECT kind, id, ref, resource, from_us, to_us, any(path), any(status), any(is_role), any(expires_us), any(end_reason)
FROM access_map
WHERE tenant = ? AND %s%s
GROUP BY kind, scope, lookup, id, key, ref, resource, from_us, to_us
HAVING argMax(present, version) = 1`
)
