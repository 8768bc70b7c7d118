package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/backfill/backfill/decode"
	"github.com/backfill/backfill/loader"
	"github.com/backfill/backfill/state"
)

// LoadFlags are the options of stage two.
type LoadFlags struct {
	DatabaseURL   string   `help:"PostgreSQL URL of the AppView database (required)." env:"DATABASE_URL"`
	Workers       int      `help:"Decode goroutines." default:"4"`
	BatchSize     int      `help:"Most sealed segments per transaction once it holds 1 MiB of frames (a transaction stops growing at 80,000 frames or 288 MiB); 1 means one segment per transaction. It never splits a segment." default:"100"`
	Collections   []string `help:"Only these record types (post, like, repost, follow, block, profile, or their NSIDs); empty means all." sep:","`
	ServiceName   string   `help:"The firehose_cursor row this tool keeps its progress in." default:"backfill" env:"BACKFILL_SERVICE_NAME"`
	MaxLoadEvents float64  `name:"max-load-events-per-sec" help:"Cap on events/s committed to the database, to run beside a live service; 0 means no cap." default:"0"`
}

// LoadCmd is `backfill load`.
type LoadCmd struct {
	SpoolFlags
	LoadFlags
	Since  time.Time `help:"Skip events before this time (RFC 3339); empty means no bound." format:"2006-01-02T15:04:05Z07:00"`
	Until  time.Time `help:"Skip events at or after this time (RFC 3339); empty means no bound." format:"2006-01-02T15:04:05Z07:00"`
	Follow bool      `help:"Keep loading segments as a running fetch seals them, until it finishes."`
	MetricsFlags
}

// Run loads the spool.
func (c *LoadCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := c.LoadFlags.config(g)
	if err != nil {
		return err
	}
	cfg.Since, cfg.Until = c.Since, c.Until
	if _, err := os.Stat(c.Spool); err != nil {
		return fmt.Errorf("spool %s: %w", c.Spool, err)
	}
	l, err := loader.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer l.Close()
	var follow func() (bool, error)
	if c.Follow {
		follow = fetchFinished(c.Spool, g)
	}
	lj := &loadJob{l: l, started: time.Now()}
	prog := newProgress(g.Progress, g.logger)
	prog.add(lj)
	if c.MetricsAddr != "" {
		prog.alwaysTick()
		if err := serveMetrics(ctx, c.MetricsAddr, &collector{load: lj}, prog, g.logger); err != nil {
			return err
		}
	}
	prog.start()
	g.logger.Info("loading", "spool", c.Spool, "database", loader.RedactDSN(cfg.DatabaseURL), "follow", c.Follow)
	sum, err := l.Run(ctx, c.Spool, follow)
	prog.stop()
	printLoadSummary(os.Stderr, sum)
	if err != nil && ctx.Err() != nil {
		return errInterrupted
	}
	return err
}

// config checks the flags and builds the loader's configuration.
func (f LoadFlags) config(g *Globals) (loader.Config, error) {
	if f.DatabaseURL == "" {
		return loader.Config{}, errors.New("--database-url (or DATABASE_URL) is required, e.g. postgres://user:password@localhost:5432/appview")
	}
	if f.Workers < 1 {
		return loader.Config{}, fmt.Errorf("--workers %d: need at least 1", f.Workers)
	}
	if f.MaxLoadEvents < 0 {
		return loader.Config{}, fmt.Errorf("--max-load-events-per-sec %v: must not be negative", f.MaxLoadEvents)
	}
	if f.BatchSize < 1 {
		return loader.Config{}, fmt.Errorf("--batch-size %d: need at least 1", f.BatchSize)
	}
	cols, err := parseCollections(f.Collections)
	if err != nil {
		return loader.Config{}, err
	}
	return loader.Config{
		DatabaseURL:     f.DatabaseURL,
		Service:         f.ServiceName,
		Workers:         f.Workers,
		BatchSize:       f.BatchSize,
		Collections:     cols,
		Logger:          g.logger,
		MaxEventsPerSec: f.MaxLoadEvents,
	}, nil
}

var collectionNames = map[string]decode.Collection{
	"post": decode.CollectionPost, "posts": decode.CollectionPost, "app.bsky.feed.post": decode.CollectionPost,
	"like": decode.CollectionLike, "likes": decode.CollectionLike, "app.bsky.feed.like": decode.CollectionLike,
	"repost": decode.CollectionRepost, "reposts": decode.CollectionRepost, "app.bsky.feed.repost": decode.CollectionRepost,
	"follow": decode.CollectionFollow, "follows": decode.CollectionFollow, "app.bsky.graph.follow": decode.CollectionFollow,
	"block": decode.CollectionBlock, "blocks": decode.CollectionBlock, "app.bsky.graph.block": decode.CollectionBlock,
	"profile": decode.CollectionProfile, "profiles": decode.CollectionProfile, "app.bsky.actor.profile": decode.CollectionProfile,
}

func parseCollections(names []string) ([]decode.Collection, error) {
	var out []decode.Collection
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" {
			continue
		}
		c, ok := collectionNames[n]
		if !ok {
			return nil, fmt.Errorf("--collections: unknown record type %q (want post, like, repost, follow, block or profile)", n)
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// fetchFinished reports, for `load --follow` in its own process, whether the fetch writing the
// spool has finished: its fetch.json says so, or the process that wrote "running" is gone.
func fetchFinished(dir string, g *Globals) func() (bool, error) {
	warned := false
	return func() (bool, error) {
		var st fetchState
		err := state.Load(filepath.Join(dir, fetchStateFile), &st)
		if errors.Is(err, state.ErrNotFound) {
			if !warned {
				g.logger.Info("waiting for a fetch to start writing the spool", "spool", dir)
				warned = true
			}
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if st.Status != "running" {
			return true, nil
		}
		if st.PID > 0 && !processAlive(st.PID) {
			g.logger.Warn("the fetch writing the spool is gone without finishing; loading what it sealed", "pid", st.PID)
			return true, nil
		}
		return false, nil
	}
}

func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return p.Signal(syscall.Signal(0)) == nil
}

// loadJob adapts a running loader to the progress display.
type loadJob struct {
	l       *loader.Loader
	started time.Time
	prev    struct{ events, rows, seq int64 }
}

func (j *loadJob) name() string { return "load" }

func (j *loadJob) totals() (events, rows int64) {
	st := j.l.Stats()
	for i := range st.Events {
		events += st.Events[i].Load()
	}
	for i := range st.Rows {
		rows += st.Rows[i].Load()
	}
	return events, rows
}

func (j *loadJob) view(dt time.Duration) (done, total int64, line string, attrs []any) {
	st := j.l.Stats()
	events, rows := j.totals()
	seq := st.LastSeq.Load()
	dEvents, dRows := events-j.prev.events, rows-j.prev.rows
	j.prev.events, j.prev.rows, j.prev.seq = events, rows, seq
	done, total = st.SegmentsDone.Load(), st.SegmentsTotal.Load()
	evt := st.LastEventTime()
	var byTable []string
	for t := loader.Table(0); t < loader.NumTables; t++ {
		if n := st.Rows[t].Load(); n > 0 {
			byTable = append(byTable, fmt.Sprintf("%s %s", t, humanCount(float64(n))))
		}
	}
	etaS := "?"
	if done > 0 && total > done {
		per := time.Since(j.started) / time.Duration(done)
		etaS = (per * time.Duration(total-done)).Round(time.Second).String()
	} else if total > 0 && done == total {
		etaS = "0s"
	}
	line = fmt.Sprintf("seg %d/%d  %s  %s  seq %d  %s  lag %s  ETA %s  [%s]",
		done, total, rate(dEvents, dt, "ev"), rate(dRows, dt, "rows"), seq,
		evt.Format("2006-01-02 15:04:05"), lagString(evt), etaS, strings.Join(byTable, ", "))
	attrs = []any{"segments_done", done, "segments_total", total,
		"events_per_s", int64(float64(dEvents) / dt.Seconds()), "rows_per_s", int64(float64(dRows) / dt.Seconds()),
		"events", events, "rows", rows, "seq", seq, "event_time", evt.Format(time.RFC3339), "lag", lagString(evt), "eta", etaS}
	return done, total, line, attrs
}

// printLoadSummary prints what a load did: events by type, rows by table, skips by reason.
func printLoadSummary(w io.Writer, s loader.Summary) {
	var events int64
	for _, n := range s.Events {
		events += n
	}
	secs := s.Duration.Seconds()
	if secs <= 0 {
		secs = 1e-9
	}
	rows := [][]string{
		{"load", "", ""},
		{"segments loaded / skipped", fmt.Sprintf("%d / %d", s.SegmentsLoaded, s.SegmentsSkipped), ""},
		{"transactions / retries", fmt.Sprintf("%d / %d", s.Transactions, s.Retries), ""},
		{"  begun ahead / their rows", fmt.Sprintf("%d / %d", s.AheadUnits, s.AheadRows), ""},
		{"frames", fmt.Sprint(s.Frames), fmt.Sprintf("%.0f/s", float64(s.Frames)/secs)},
	}
	kinds := make([]decode.Kind, 0, len(s.Events))
	for k := range s.Events {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(a, b int) bool { return kinds[a] < kinds[b] })
	for _, k := range kinds {
		rows = append(rows, []string{"  events " + k.String(), fmt.Sprint(s.Events[k]), ""})
	}
	var totalRows int64
	for t := loader.Table(0); t < loader.NumTables; t++ {
		c, ok := s.Rows[t]
		if !ok {
			continue
		}
		n := c.Inserted + c.Updated + c.Deleted
		totalRows += n
		counts := fmt.Sprintf("+%d ~%d -%d", c.Inserted, c.Updated, c.Deleted)
		if c.Elided > 0 {
			counts += fmt.Sprintf(" (%d left out)", c.Elided)
		}
		rows = append(rows, []string{"  rows " + t.String(), counts, ""})
	}
	rows = append(rows, []string{"rows written", fmt.Sprint(totalRows), fmt.Sprintf("%.0f/s", float64(totalRows)/secs)})
	for _, m := range []struct {
		label string
		m     map[decode.Reason]int64
	}{{"skipped", s.Skipped}, {"repaired", s.Repaired}} {
		reasons := make([]string, 0, len(m.m))
		for r := range m.m {
			reasons = append(reasons, string(r))
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			rows = append(rows, []string{"  " + m.label + " " + r, fmt.Sprint(m.m[decode.Reason(r)]), ""})
		}
	}
	rows = append(rows,
		[]string{"last seq", fmt.Sprint(s.LastSeq), fmtTime(s.LastEventTime)},
		[]string{"elapsed", s.Duration.Round(time.Millisecond).String(), fmt.Sprintf("%.0f events/s", float64(events)/secs)},
		[]string{"  decode / write / wait", fmt.Sprintf("%s / %s / %s", s.DecodeTime.Round(time.Millisecond), s.WriteTime.Round(time.Millisecond), s.WaitTime.Round(time.Millisecond)), ""},
	)
	fmt.Fprint(w, table(rows))
}
