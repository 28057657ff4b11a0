package clickhouse

import (
	"encoding/json"
	"time"

	"github.com/whocould/whocould/event"
)

// The tables' rows, apart from the domain types: a row struct per table (decisions held column
// by column), its columns listed in the order of its INSERT, sent column by column.

// The range of the Date and DateTime columns that partition the tables. Times outside it (event
// time may be up to 2200) are clamped for partitioning only: the *_us columns keep them exactly.
var (
	minPartTime = time.Unix(0, 0).UTC()
	maxPartTime = time.Date(2105, 12, 31, 0, 0, 0, 0, time.UTC)
)

// partTime is t clamped to what Date and DateTime hold, in UTC. It never decreases as t grows,
// so a bound on t is a bound on partTime(t).
func partTime(t time.Time) time.Time {
	switch {
	case t.Before(minPartTime):
		return minPartTime
	case t.After(maxPartTime):
		return maxPartTime
	}
	return t.UTC()
}

// partDay is the Date of t, as the date column holds it: 'YYYY-MM-DD'.
func partDay(t time.Time) string { return partTime(t).Format(time.DateOnly) }

// eventRow is a row of events, the archive.
type eventRow struct {
	tenant     string
	position   uint64
	recorded   time.Time
	recordedUS int64
	timeUS     int64
	source     string
	id         string
	typ        string
	json       string
}

const eventColumns = "tenant, position, recorded, recorded_us, time_us, source, id, type, event"

func newEventRow(r *event.Record) eventRow {
	return eventRow{
		tenant: r.TenantOrDefault(), position: r.Position, recorded: partTime(r.Recorded), recordedUS: event.Micros(r.Recorded),
		timeUS: event.Micros(r.Time), source: r.Source, id: r.ID, typ: string(r.Type), json: string(eventJSON(&r.Event)),
	}
}

// eventJSON is e as a CloudEvent. Events in the log were validated when they were accepted; one
// that does not validate (an older rule) is still archived, by encoding/json.
func eventJSON(e *event.Event) []byte {
	if b, err := event.Marshal(e); err == nil {
		return b
	}
	b, err := json.Marshal(struct {
		SpecVersion string     `json:"specversion"`
		ID          string     `json:"id"`
		Source      string     `json:"source"`
		Type        string     `json:"type"`
		Time        time.Time  `json:"time"`
		Data        event.Data `json:"data"`
	}{event.SpecVersion, e.ID, e.Source, string(e.Type), e.Time.UTC(), e.Data})
	if err != nil { // only for a Change that is not JSON: keep what can be kept
		e2 := *e
		e2.Data.Change = nil
		return eventJSON(&e2)
	}
	return b
}

func eventCols(rows []eventRow) []any {
	n := len(rows)
	tenant, position, recorded, recordedUS := make([]string, n), make([]uint64, n), make([]time.Time, n), make([]int64, n)
	timeUS, source, id, typ, js := make([]int64, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i := range rows {
		r := &rows[i]
		tenant[i], position[i], recorded[i], recordedUS[i] = r.tenant, r.position, r.recorded, r.recordedUS
		timeUS[i], source[i], id[i], typ[i], js[i] = r.timeUS, r.source, r.id, r.typ, r.json
	}
	return []any{tenant, position, recorded, recordedUS, timeUS, source, id, typ, js}
}

// decisionRows is rows of decisions, held column by column as they are sent: decisions are
// most of the rows, and this form makes no copy of them and, reused, allocates nothing.
type decisionRows struct {
	tenant     []string
	date       []time.Time
	timeUS     []int64
	position   []uint64
	principal  []string
	action     []string
	resource   []string
	allow      []uint8 // 1: allow, 0: deny
	reason     []string
	policy     []string
	request    []string
	source     []string
	id         []string
	recordedUS []int64
}

const decisionColumns = "tenant, date, time_us, position, principal, action, resource, allow, reason, policy, request, source, id, recorded_us"

func (c *decisionRows) add(r *event.Record) {
	d := &r.Data
	var allow uint8
	if d.Effect == event.Allow {
		allow = 1
	}
	c.tenant = append(c.tenant, r.TenantOrDefault())
	c.date = append(c.date, partTime(r.Time))
	c.timeUS = append(c.timeUS, event.Micros(r.Time))
	c.position = append(c.position, r.Position)
	c.principal = append(c.principal, d.Principal)
	c.action = append(c.action, d.Action)
	c.resource = append(c.resource, d.Resource)
	c.allow = append(c.allow, allow)
	c.reason = append(c.reason, d.Reason)
	c.policy = append(c.policy, d.Policy)
	c.request = append(c.request, d.Request)
	c.source = append(c.source, r.Source)
	c.id = append(c.id, r.ID)
	c.recordedUS = append(c.recordedUS, event.Micros(r.Recorded))
}

func (c *decisionRows) len() int { return len(c.position) }

// cols is rows [i, j), a slice per column in the order of decisionColumns.
func (c *decisionRows) cols(i, j int) []any {
	return []any{c.tenant[i:j], c.date[i:j], c.timeUS[i:j], c.position[i:j], c.principal[i:j], c.action[i:j], c.resource[i:j],
		c.allow[i:j], c.reason[i:j], c.policy[i:j], c.request[i:j], c.source[i:j], c.id[i:j], c.recordedUS[i:j]}
}

// keep keeps the rows for which keep(i) holds and returns how many it dropped.
func (c *decisionRows) keep(keep func(i int) bool) int {
	n := 0
	for i := range c.position {
		if !keep(i) {
			continue
		}
		c.tenant[n], c.date[n], c.timeUS[n], c.position[n] = c.tenant[i], c.date[i], c.timeUS[i], c.position[i]
		c.principal[n], c.action[n], c.resource[n], c.allow[n] = c.principal[i], c.action[i], c.resource[i], c.allow[i]
		c.reason[n], c.policy[n], c.request[n], c.source[n] = c.reason[i], c.policy[i], c.request[i], c.source[i]
		c.id[n], c.recordedUS[n] = c.id[i], c.recordedUS[i]
		n++
	}
	dropped := c.len() - n
	c.truncate(n)
	return dropped
}

// truncate keeps the first n rows, clearing the rest so that they hold no strings.
func (c *decisionRows) truncate(n int) {
	for _, s := range [][]string{c.tenant, c.principal, c.action, c.resource, c.reason, c.policy, c.request, c.source, c.id} {
		clear(s[n:])
	}
	c.tenant, c.date, c.timeUS, c.position = c.tenant[:n], c.date[:n], c.timeUS[:n], c.position[:n]
	c.principal, c.action, c.resource, c.allow = c.principal[:n], c.action[:n], c.resource[:n], c.allow[:n]
	c.reason, c.policy, c.request, c.source = c.reason[:n], c.policy[:n], c.request[:n], c.source[:n]
	c.id, c.recordedUS = c.id[:n], c.recordedUS[:n]
}

// approvalRow is a row of approvals: one approval event.
type approvalRow struct {
	tenant     string
	request    string
	position   uint64
	typ        string
	timeUS     int64
	requester  string
	approver   string
	reason     string
	change     string
	recorded   time.Time
	recordedUS int64
}

const approvalColumns = "tenant, request, position, type, time_us, requester, approver, reason, change, recorded, recorded_us"

func newApprovalRow(r *event.Record) approvalRow {
	d := &r.Data
	return approvalRow{
		tenant: r.TenantOrDefault(), request: d.Request, position: r.Position, typ: string(r.Type), timeUS: event.Micros(r.Time),
		requester: d.Requester, approver: d.Approver, reason: d.Reason, change: string(d.Change),
		recorded: partTime(r.Recorded), recordedUS: event.Micros(r.Recorded),
	}
}

func approvalCols(rows []approvalRow) []any {
	n := len(rows)
	tenant, request, position, typ := make([]string, n), make([]string, n), make([]uint64, n), make([]string, n)
	timeUS, requester, approver, reason := make([]int64, n), make([]string, n), make([]string, n), make([]string, n)
	change, recorded, recordedUS := make([]string, n), make([]time.Time, n), make([]int64, n)
	for i := range rows {
		r := &rows[i]
		tenant[i], request[i], position[i], typ[i] = r.tenant, r.request, r.position, r.typ
		timeUS[i], requester[i], approver[i], reason[i] = r.timeUS, r.requester, r.approver, r.reason
		change[i], recorded[i], recordedUS[i] = r.change, r.recorded, r.recordedUS
	}
	return []any{tenant, request, position, typ, timeUS, requester, approver, reason, change, recorded, recordedUS}
}
