package schedule

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	runs        *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lastSuccess *prometheus.GaugeVec
	running     *prometheus.GaugeVec
}

// newMetrics builds the scheduler's metrics and registers them with reg (nil: kept, not
// registered).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "whocould", Subsystem: "schedule", Name: "runs_total",
			Help: "Job runs by job and status (ok, failed, timeout, panic, canceled, skipped), scheduled and manual.",
		}, []string{"job", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "whocould", Subsystem: "schedule", Name: "run_duration_seconds",
			Help:    "Duration of job runs that started (skipped ones excluded), by job.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 12), // 10ms .. ~30min
		}, []string{"job"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "whocould", Subsystem: "schedule", Name: "last_success_timestamp_seconds",
			Help: "Unix time at which the job's last successful run finished; absent until one has.",
		}, []string{"job"}),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "whocould", Subsystem: "schedule", Name: "running",
			Help: "1 while a run of the job is in progress (including one past its timeout that ignores its context), else 0.",
		}, []string{"job"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := errors.Join(reg.Register(m.runs), reg.Register(m.duration), reg.Register(m.lastSuccess), reg.Register(m.running)); err != nil {
		return nil, fmt.Errorf("schedule: register metrics: %w", err)
	}
	return m, nil
}

// addJob makes every series of the job exist at zero, so rates and alerts work from the start.
func (m *metrics) addJob(name string) {
	for _, st := range []Status{StatusOK, StatusFailed, StatusTimeout, StatusPanic, StatusCanceled, StatusSkipped} {
		m.runs.WithLabelValues(name, string(st))
	}
	m.running.WithLabelValues(name).Set(0)
}

func (m *metrics) record(r Run) {
	m.runs.WithLabelValues(r.Job, string(r.Status)).Inc()
	if r.Status == StatusSkipped {
		return
	}
	m.running.WithLabelValues(r.Job).Set(0)
	m.duration.WithLabelValues(r.Job).Observe(r.Duration.Seconds())
	if r.Status == StatusOK {
		m.lastSuccess.WithLabelValues(r.Job).Set(float64(r.Finished.UnixNano()) / 1e9)
	}
}
