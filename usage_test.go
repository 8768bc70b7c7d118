package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backfill/backfill/relaytest"
)

// The replaced tool's README usage patterns, each run as written against the test relay.

// firstAtOrAfter returns the seq of the first logged event at or after t.
func firstAtOrAfter(r *relaytest.Relay, t time.Time) int64 {
	for _, f := range r.Log() {
		if !f.Time.Before(t) {
			return f.Seq
		}
	}
	return r.Head() + 1
}

// compareWindow checks the database against the model of the events from the start of a
// --days window to the head. The window's cutoff is taken by the command a moment after the
// test took its own, so an event falling between the two may go either way.
func compareWindow(t *testing.T, dsn string, r *relaytest.Relay, before, after time.Time) {
	t.Helper()
	got := dumpDB(t, dsn)
	var last []string
	for _, from := range []int64{firstAtOrAfter(r, before), firstAtOrAfter(r, after)} {
		if last = diffModel(got, r.Model(from, r.Head())); len(last) == 0 {
			return
		}
	}
	t.Fatalf("database differs from the model of the window:\n  %s", strings.Join(last, "\n  "))
}

// spreadRelay logs events spread evenly over the last `days` days.
func spreadRelay(t *testing.T, seed int64, events int, days int) *relaytest.Relay {
	span := time.Duration(days) * 24 * time.Hour
	return startRelay(t, relaytest.Config{Seed: seed, Users: 20, Events: events,
		StartTime: time.Now().Add(-span).Truncate(time.Millisecond), Interval: span / time.Duration(events)})
}

func TestUsageLastNDays(t *testing.T) {
	t.Parallel()
	r := spreadRelay(t, 301, 1500, 40)
	dsn := newDatabase(t)
	before := time.Now().Add(-30 * 24 * time.Hour)
	// `python3 backfill.py --days 30` -> `backfill --days 30` (the default command).
	if code := backfill(t, "--days", "30", "--relay-url", r.URL(), "--database-url", dsn, "--spool", t.TempDir(), "--idle-timeout", "1s"); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	compareWindow(t, dsn, r, before, time.Now().Add(-30*24*time.Hour))
}

func TestUsageAllHistory(t *testing.T) {
	t.Parallel()
	r := spreadRelay(t, 302, 1200, 5)
	dsn := newDatabase(t)
	// `python3 backfill.py --days -1`
	if code := backfill(t, "--days", "-1", "--relay-url", r.URL(), "--database-url", dsn, "--spool", t.TempDir(), "--idle-timeout", "1s"); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	compareModel(t, dumpDB(t, dsn), r.Model(0, r.Head()))
}

func TestUsageStartCursorAndIncremental(t *testing.T) {
	t.Parallel()
	r := spreadRelay(t, 303, 2000, 30)
	dsn := newDatabase(t)
	log := r.Log()
	start := log[400].Seq
	// `python3 backfill.py --start-cursor 12345000 --days 7`: the cursor overrides --days.
	week1 := log[1000].Seq
	if code := backfill(t, "--start-cursor", fmt.Sprint(start), "--days", "7", "--until-cursor", fmt.Sprint(week1),
		"--relay-url", r.URL(), "--database-url", dsn, "--spool", t.TempDir(), "--idle-timeout", "1s"); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	// The test relay is exclusive: cursor N replays from N+1.
	compareModel(t, dumpDB(t, dsn), r.Model(start+1, week1))

	// Incremental: `--start-cursor <last-cursor> --days 21` into a new spool goes on from there.
	var last int64
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(context.Background(), `SELECT cursor::bigint FROM firehose_cursor WHERE service = 'backfill'`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
	if last != week1 {
		t.Fatalf("firehose_cursor holds %d, want %d", last, week1)
	}
	if code := backfill(t, "--start-cursor", fmt.Sprint(last), "--days", "21",
		"--relay-url", r.URL(), "--database-url", dsn, "--spool", t.TempDir(), "--idle-timeout", "1s"); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	compareModel(t, dumpDB(t, dsn), r.Model(start+1, r.Head()))
}

func TestUsageWorkersAndBatchSize(t *testing.T) {
	t.Parallel()
	r := spreadRelay(t, 304, 1500, 3)
	dsn := newDatabase(t)
	// `python3 backfill.py --days 30 --workers 8 --batch-size 200`
	if code := backfill(t, "--days", "30", "--workers", "8", "--batch-size", "200", "--segment-size", "50000",
		"--relay-url", r.URL(), "--database-url", dsn, "--spool", t.TempDir(), "--idle-timeout", "1s"); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	compareModel(t, dumpDB(t, dsn), r.Model(0, r.Head()))
}

// TestUsageResume interrupts a run with SIGINT (exit 130, everything durable), then
// `backfill --resume` finishes the job with nothing lost or doubled.
func TestUsageResume(t *testing.T) {
	t.Parallel()
	r := spreadRelay(t, 305, 5000, 2)
	dsn := newDatabase(t)
	dir := t.TempDir()
	args := []string{"--days", "-1", "--relay-url", r.URL(), "--database-url", dsn, "--spool", dir,
		"--idle-timeout", "2s", "--segment-size", "100000", "--max-fetch-bytes-per-sec", "3000000"}
	cmd, out := startProc(t, args...)
	time.Sleep(2500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Fatalf("exit code %d after SIGINT, want 130 (err %v)\n%s", code, err, out)
	}
	// Resume: the spool and the database's own record say where to go on.
	if code := backfill(t, append([]string{"--resume"}, args[2:]...)...); code != 0 {
		t.Fatalf("--resume exit code %d", code)
	}
	compareModel(t, dumpDB(t, dsn), r.Model(0, r.Head()))

	// --resume with nothing to resume from is an error that says what is missing.
	empty := exec.Command(binary(t), "fetch", "--resume", "--spool", t.TempDir(), "--relay-url", r.URL())
	msg, err := empty.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "holds no frames to resume from") {
		t.Fatalf("fetch --resume on an empty spool: err %v, output:\n%s", err, msg)
	}
}

// TestUsageResumeEmptySpool runs `backfill --resume` with an empty spool: after a load from
// the same relay it goes on from that relay's mark; after loads from another relay only, it
// refuses (a cursor means nothing on another relay) instead of skipping the new relay's
// history up to the other's seq.
func TestUsageResumeEmptySpool(t *testing.T) {
	t.Parallel()
	a := spreadRelay(t, 307, 600, 2)
	dsn := newDatabase(t)
	if code := backfill(t, "--days", "-1", "--relay-url", a.URL(), "--database-url", dsn, "--spool", t.TempDir(), "--idle-timeout", "1s"); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	a.Append(100)
	if code := backfill(t, "--resume", "--relay-url", a.URL(), "--database-url", dsn, "--spool", t.TempDir(), "--idle-timeout", "1s"); code != 0 {
		t.Fatalf("--resume from the same relay: exit code %d", code)
	}
	compareModel(t, dumpDB(t, dsn), a.Model(0, a.Head()))

	b := spreadRelay(t, 308, 900, 2)
	cmd := exec.Command(binary(t), "--resume", "--relay-url", b.URL(), "--database-url", dsn, "--spool", t.TempDir(), "--progress", "none")
	msg, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "a cursor means nothing on another relay") {
		t.Fatalf("--resume from another relay: err %v, output:\n%s", err, msg)
	}
	// A spool that holds the other relay's frames is where --resume goes on from: the
	// database is not asked.
	spoolB := t.TempDir()
	if code := backfill(t, "fetch", "--days", "-1", "--relay-url", b.URL(), "--spool", spoolB, "--idle-timeout", "1s"); code != 0 {
		t.Fatalf("fetch from the other relay: exit code %d", code)
	}
	if code := backfill(t, "--resume", "--relay-url", b.URL(), "--database-url", dsn, "--spool", spoolB, "--idle-timeout", "1s"); code != 0 {
		t.Fatalf("--resume with the other relay's spool: exit code %d", code)
	}
}

// TestUsageResumeGap resumes with an empty spool from the database's mark on a relay that no
// longer holds it and, as indigo's relay does, replays from its oldest event without a word:
// the jump in event time is warned of, with the mark's time from backfill_loader.
func TestUsageResumeGap(t *testing.T) {
	t.Parallel()
	r := startRelay(t, relaytest.Config{Seed: 309, Users: 20, Events: 600, Interval: 5 * time.Second, Retention: 200, NoOutdatedInfo: true})
	dsn := newDatabase(t)
	if code := backfill(t, "--days", "-1", "--relay-url", r.URL(), "--database-url", dsn, "--spool", t.TempDir(), "--idle-timeout", "1s"); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	r.Append(400) // the relay now holds seqs 801-1000: 801 is 1,000 s of events after the mark, 600
	cmd := exec.Command(binary(t), "--resume", "--relay-url", r.URL(), "--database-url", dsn, "--spool", t.TempDir(),
		"--idle-timeout", "1s", "--progress", "none", "--log-level", "warn")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("--resume: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "the relay resumed far later than the last kept event") {
		t.Errorf("no warning of the gap:\n%s", out)
	}
}

// TestMetrics serves /metrics and the status page during a run.
func TestMetrics(t *testing.T) {
	t.Parallel()
	r := startRelay(t, relaytest.Config{Seed: 306, Users: 10, Events: 400, LiveRate: 50})
	dsn := newDatabase(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd, out := startProc(t, "run", "--follow", "--days", "-1", "--relay-url", r.URL(), "--database-url", dsn,
		"--spool", t.TempDir(), "--segment-age", "1s", "--metrics-addr", addr)
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	get := func(path string) string {
		for i := 0; i < 100; i++ {
			resp, err := http.Get("http://" + addr + path)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return string(b)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("GET %s: no answer\n%s", path, out)
		return ""
	}
	var metrics string
	for i := 0; i < 100; i++ {
		metrics = get("/metrics")
		if strings.Contains(metrics, `backfill_load_rows_total{table="posts"}`) && !strings.Contains(metrics, `backfill_load_rows_total{table="posts"} 0`) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, want := range []string{"backfill_fetch_frames_total", "backfill_fetch_lag_seconds", "backfill_load_segments_done_total",
		`backfill_load_events_total{type="#commit"}`, `backfill_load_rows_total{table="posts"}`, "backfill_load_last_seq"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, `backfill_load_rows_total{table="posts"} 0`) {
		t.Errorf("no posts loaded while following:\n%s", out)
	}
	page := get("/")
	if !strings.Contains(page, `http-equiv="refresh"`) || !strings.Contains(page, "fetch") || !strings.Contains(page, "load") {
		t.Errorf("status page lacks its refresh or stages:\n%s", page)
	}
	_ = os.Stderr
}

// TestStopAtLive: the live consumer's firehose_cursor row says where it began; the backfill
// stops there, so the two meet without a gap or double work.
func TestStopAtLive(t *testing.T) {
	t.Parallel()
	r := startRelay(t, relaytest.Config{Seed: 307, Users: 15, Events: 2000, LiveRate: 20})
	dsn := newDatabase(t)
	live := r.Log()[1200].Seq
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	// The live app's own table, as its Drizzle schema makes it, holding its cursor.
	if _, err := conn.Exec(ctx, `CREATE TABLE firehose_cursor (id serial PRIMARY KEY, service varchar(255) NOT NULL UNIQUE,
		cursor text, last_event_time timestamp, updated_at timestamp NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO firehose_cursor (service, cursor) VALUES ('firehose', $1)`, fmt.Sprint(live)); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if code := backfill(t, "--days", "-1", "--stop-at-live", "--relay-url", r.URL(), "--database-url", dsn,
		"--spool", t.TempDir(), "--idle-timeout", "1s"); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	got := dumpDB(t, dsn)
	compareModel(t, got, r.Model(0, live))

	// Without a live row, --stop-at-live explains what it needs.
	dsn2 := newDatabase(t)
	out, err := exec.Command(binary(t), "--days", "-1", "--stop-at-live", "--relay-url", r.URL(), "--database-url", dsn2,
		"--spool", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `no firehose_cursor row for service "firehose"`) {
		t.Fatalf("--stop-at-live without a live row: err %v\n%s", err, out)
	}
}
