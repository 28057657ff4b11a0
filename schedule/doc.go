// Package schedule runs whocould's periodic work — analyzers, reports, notification emails —
// on cron schedules and on demand, through one wrapper that makes every run safe and visible.
//
// Specs are parsed by github.com/robfig/cron/v3 (see Job.Spec and ParseSpec); the Scheduler
// runs its own small loop over those schedules, like robfig/cron's runner, so that its clock
// can be injected and a tick's outcome is recorded before the next one is taken.
//
// # The wrapper
//
// Every run, scheduled or started by RunNow, goes through the same steps:
//   - one at a time per job: a scheduled tick that finds the job running is recorded as a
//     skipped run and dropped (never queued); RunNow returns ErrRunning and records nothing;
//   - a context with the job's Timeout (cause ErrTimeout), also cancelled by Stop (cause
//     ErrStopped) and by the context given to Start (scheduled runs) or to RunNow (manual ones);
//   - a job that has not returned CancelGrace after its context was done is logged as ignoring
//     its context and shown Overrunning; it still counts as running, so ticks stay skipped until
//     it returns, and it is recorded as timed out (or cancelled) with its Overrun;
//   - panics are recovered: the run is recorded with StatusPanic and the panic value, the stack
//     goes to the log, and the scheduler carries on;
//   - the run is kept in the job's history (Runs, newest first, Config.History per job), counted
//     in the metrics, logged, and passed to Config.OnRun.
//
// # Metrics
//
// Registered on Config.Registry:
//
//	whocould_schedule_runs_total{job,status}                 counter, every status incl. skipped
//	whocould_schedule_run_duration_seconds{job}              histogram of runs that started
//	whocould_schedule_last_success_timestamp_seconds{job}    gauge, absent until a success
//	whocould_schedule_running{job}                           gauge, 1 while a run is in progress
//
// # Missed runs
//
// Runs are not made up. Ticks that pass while the process is down or stopped are lost: after a
// restart a job next runs at its next activation. Ticks that pass while the process is
// suspended or the loop is late fire once, on waking, and the next one is computed from then.
//
// # Daylight saving time
//
// A spec's fields are matched against local wall-clock time in its zone (CRON_TZ=, else
// Config.Location, default UTC). As measured on Europe/Berlin (tests in dst_test.go):
//
// On the spring-forward day (29 March 2026: 02:00 CET becomes 03:00 CEST) the local times
// 02:00:00-02:59:59 do not exist, and a job whose fields only match inside that hour does not
// run that day: "30 2 * * *" runs on the 28th at 02:30 CET and next on the 30th at 02:30
// CEST; it is not moved to just after the change, as Debian's cron(8) would. "0 2-3 * * *"
// runs only at 03:00.
//
// On the fall-back day (25 October 2026: 03:00 CEST becomes 02:00 CET) the local times
// 02:00:00-02:59:59 happen twice, and a job matching them runs twice, an hour apart:
// "30 2 * * *" runs at 02:30 CEST (00:30 UTC) and again at 02:30 CET (01:30 UTC), where
// cron(8) would run it once.
//
// Jobs at other times of day ("59 1 * * *", "0 3 * * *", @daily at midnight) run once as on
// any day. Sub-daily fields step through real time, so every existing instant matches once:
// "0 * * * *" and @hourly run 23 times on the short day and 25 on the long one, always an
// hour apart. @every counts elapsed time and ignores zones. A zone without DST (CRON_TZ=UTC, the
// default Location) has none of this. So: schedule daily and weekly work outside 02:00-02:59
// local time, or in UTC, unless a skipped or doubled run is acceptable; the runs themselves
// should be idempotent anyway.
package schedule
