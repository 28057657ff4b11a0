package access

import (
	"fmt"
	"time"

	"github.com/whocould/whocould/event"
)

// Question kinds, as the CLI's subcommands and the HTTP API's paths name them.
const (
	AskWhoCould  = "who-could"
	AskWhatCould = "what-could"
	AskExplain   = "explain"
	AskHistory   = "history"
)

// Params are the names of a question's parameters: CLI flags without "--", HTTP query
// parameters as they are.
var Params = []string{"tenant", "principal", "action", "resource", "at", "known_at", "from", "to"}

// ParamError is a bad or missing parameter.
type ParamError struct {
	Param string // as in Params; "principal|resource" when one of the two is missing
	Msg   string
}

func (e *ParamError) Error() string { return e.Param + " " + e.Msg }

// needs are each question's required parameters ("a|b": exactly one of them).
var needs = map[string][]string{
	AskWhoCould:  {"action", "resource"},
	AskWhatCould: {"principal"},
	AskExplain:   {"principal", "action", "resource"},
	AskHistory:   {"principal|resource"},
}

// ParseQuery builds the question of kind ask from its parameters (get returns "" for one not
// given), checking every value: times are RFC 3339 between 1970 and 2200 (at and to default to
// now, from to the Unix epoch, tenant to the default tenant), ids, actions and resources as
// events spell them. Errors are *ParamError.
func ParseQuery(ask string, get func(param string) string, now time.Time) (Query, error) {
	need, ok := needs[ask]
	if !ok {
		return Query{}, fmt.Errorf("unknown question %q: want who-could, what-could, explain or history", ask)
	}
	now = now.UTC()
	q := Query{Tenant: get("tenant"), Principal: get("principal"), Action: get("action"), Resource: get("resource")}
	if q.Tenant == "" {
		q.Tenant = event.DefaultTenant
	}
	var err error
	if q.At, err = parseParamTime("at", get("at"), now); err != nil {
		return q, err
	}
	if v := get("known_at"); v != "" {
		k, err := parseParamTime("known_at", v, now)
		if err != nil {
			return q, err
		}
		q.KnownAt = &k
	}
	if q.From, err = parseParamTime("from", get("from"), time.Unix(0, 0).UTC()); err != nil {
		return q, err
	}
	if q.To, err = parseParamTime("to", get("to"), now); err != nil {
		return q, err
	}
	if !q.From.Before(q.To) && ask == AskHistory {
		return q, &ParamError{"to", fmt.Sprintf("%s is not after from %s", q.To.Format(time.RFC3339Nano), q.From.Format(time.RFC3339Nano))}
	}
	for _, n := range need {
		switch n {
		case "principal|resource":
			if (q.Principal == "") == (q.Resource == "") {
				return q, &ParamError{n, "give exactly one of principal and resource"}
			}
		default:
			if get(n) == "" {
				return q, &ParamError{n, "is required"}
			}
		}
	}
	if q.Principal != "" {
		if err := event.CheckID(q.Principal); err != nil {
			return q, &ParamError{"principal", fmt.Sprintf("%q %v", q.Principal, err)}
		}
		if k := event.KindOf(q.Principal); k != event.KindPrincipal {
			return q, &ParamError{"principal", fmt.Sprintf("%q names a %s, not a principal", q.Principal, k)}
		}
	}
	if q.Action != "" {
		if err := event.CheckAction(q.Action); err != nil {
			return q, &ParamError{"action", fmt.Sprintf("%q %v", q.Action, err)}
		}
	}
	if q.Resource != "" {
		if err := event.CheckResource(q.Resource); err != nil {
			return q, &ParamError{"resource", fmt.Sprintf("%q %v", q.Resource, err)}
		}
	}
	return q, nil
}

func parseParamTime(param, v string, def time.Time) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, &ParamError{param, fmt.Sprintf("%q: not an RFC 3339 time (e.g. 2026-01-06T02:14:00Z)", v)}
	}
	if t.Year() < 1970 || t.Year() > 2200 {
		return time.Time{}, &ParamError{param, fmt.Sprintf("%q: out of range (1970 to 2200)", v)}
	}
	return t.UTC(), nil
}
