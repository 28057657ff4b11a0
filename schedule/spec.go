package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule is a parsed spec: Next returns the first activation strictly after t, or the zero
// time if there is none in the next five years. A spec without a CRON_TZ= prefix is read in
// the location of t.
type Schedule interface {
	Next(t time.Time) time.Time
}

// parser accepts 5 fields (minute hour dom month dow), 6 with a leading seconds field, an
// optional CRON_TZ=Zone (or TZ=Zone) prefix, and the descriptors @yearly, @monthly, @weekly,
// @daily, @hourly and @every <duration>.
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSpec parses spec exactly as Scheduler.Add does, so configuration can be checked before
// a scheduler exists. Beyond what robfig/cron checks it rejects: a zone prefix with nothing
// after it (robfig/cron panics on it), @every durations under one second or with a fraction
// of a second (robfig/cron silently rounds those up to whole seconds, at least 1s), and specs
// that never fire (such as "0 0 30 2 *").
func ParseSpec(spec string) (Schedule, error) { return parseSpec(spec, time.Now()) }

func parseSpec(spec string, now time.Time) (sched Schedule, err error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return nil, errors.New("empty spec")
	}
	body := s
	if strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=") {
		_, rest, ok := strings.Cut(s, " ")
		if rest = strings.TrimSpace(rest); !ok || rest == "" {
			return nil, errors.New("time zone prefix without a schedule")
		}
		body = rest
	}
	if d, ok := strings.CutPrefix(body, "@every "); ok {
		dur, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return nil, fmt.Errorf("@every: %w", err)
		}
		if dur < time.Second || dur%time.Second != 0 {
			return nil, fmt.Errorf("@every %s: must be a whole number of seconds, at least 1s (robfig/cron would round it)", dur)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			sched, err = nil, fmt.Errorf("unparsable: %v", r)
		}
	}()
	cs, err := parser.Parse(s)
	if err != nil {
		return nil, err
	}
	if cs.Next(now).IsZero() {
		return nil, errors.New("never fires")
	}
	return cs, nil
}
