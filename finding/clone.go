package finding

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Clone is a deep copy of f, its Details in the shape JSON gives them back (cloneValue): what a
// store keeps shares no memory with what its callers hold.
func (f Finding) Clone() Finding {
	f.Ended, f.ResolvedAt = cloneTime(f.Ended), cloneTime(f.ResolvedAt)
	f.Acknowledged, f.Suppression = f.Acknowledged.clone(), f.Suppression.clone()
	f.History = slices.Clone(f.History)
	if f.Evidence != nil {
		ev := make([]Evidence, len(f.Evidence))
		for i, e := range f.Evidence {
			e.Time, e.Until = cloneTime(e.Time), cloneTime(e.Until)
			if e.Event != nil {
				ref := *e.Event
				e.Event = &ref
			}
			if e.Path != nil {
				p := e.Path.Clone()
				e.Path = &p
			}
			ev[i] = e
		}
		f.Evidence = ev
	}
	if f.Details != nil {
		d := make(map[string]any, len(f.Details))
		for k, v := range f.Details {
			d[k] = cloneValue(v)
		}
		f.Details = d
	}
	return f
}

func (n *Note) clone() *Note {
	if n == nil {
		return nil
	}
	c := *n
	c.Until = cloneTime(n.Until)
	return &c
}

func cloneTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

// cloneValue is a deep copy of a detail in the shape JSON gives it back (numbers float64, lists
// []any, objects map[string]any), so that a finding reads the same from a store before and after
// it is reopened: the scalars and lists the rules write are converted directly, anything else
// through JSON.
func cloneValue(v any) any {
	switch v := v.(type) {
	case nil, string, bool, float64:
		return v
	case int:
		return float64(v)
	case int64:
		return float64(v)
	case time.Duration:
		return float64(v)
	case []string:
		c := make([]any, len(v))
		for i, x := range v {
			c[i] = x
		}
		return c
	case []any:
		c := make([]any, len(v))
		for i, x := range v {
			c[i] = cloneValue(x)
		}
		return c
	case map[string]any:
		c := make(map[string]any, len(v))
		for k, x := range v {
			c[k] = cloneValue(x)
		}
		return c
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v) // what no JSON can hold: unmarshalable values are the rule's bug
	}
	var c any
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Sprint(v)
	}
	return c
}
