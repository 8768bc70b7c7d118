package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/backfill/backfill/deletes"
	"github.com/backfill/backfill/firehose"
	"github.com/backfill/backfill/spool"
	"github.com/backfill/backfill/state"
)

// SpoolFlags locate the spool.
type SpoolFlags struct {
	Spool string `help:"Spool directory: segment files plus their index." default:"./spool" env:"BACKFILL_SPOOL" type:"path"`
}

// FetchFlags are the options of stage one.
type FetchFlags struct {
	RelayURL      string        `help:"Relay to read: a host, a ws(s):// URL, or the full subscribeRepos URL." default:"wss://bsky.network" env:"RELAY_URL"`
	Days          int           `help:"Days of history: N>0 starts at the first event of the last N days, -1 fetches everything the relay still holds, 0 disables the time cutoff." default:"0"`
	StartCursor   int64         `help:"Relay cursor to start from (overrides --days); 0 means not set." default:"0"`
	Resume        bool          `help:"Continue from the spool's last durable frame; an error when there is none."`
	UntilCursor   int64         `help:"Stop after this relay seq; 0 means no such stop." default:"0"`
	Until         time.Time     `help:"Stop where events reach this time (RFC 3339). An event's time is its PDS's clock: one at or after it is kept when an earlier one follows; 32 in a row, the stop seq, or the stream's end at the relay's head confirm the stop, keeping none of them. Empty means no such stop." format:"2006-01-02T15:04:05Z07:00"`
	Follow        bool          `help:"Keep tailing the live stream instead of stopping at the relay's head as it stood at the start."`
	IdleTimeout   time.Duration `help:"A replay that delivers nothing for this long has caught up (used when the head is unknown, e.g. on a quiet relay)." default:"5s"`
	ReadTimeout   time.Duration `help:"A connection that delivers nothing (not even a pong) for this long is stalled and reconnected." default:"60s"`
	SegmentSize   int64         `help:"Seal a segment when it holds this many raw bytes." default:"67108864"`
	SegmentAge    time.Duration `help:"Seal a segment this long after it was started, so load can start on it." default:"1m"`
	ZstdLevel     int           `help:"zstd level: 1 fastest, 2 default, 3 better, 4 best." default:"2" enum:"1,2,3,4"`
	MaxFetchBytes int64         `name:"max-fetch-bytes-per-sec" help:"Cap on bytes/s received from the relay; 0 means no cap." default:"0"`
}

// FetchCmd is `backfill fetch`.
type FetchCmd struct {
	SpoolFlags
	FetchFlags
	MetricsFlags
}

// Run fetches until a stop point, an interrupt or a fatal error.
func (c *FetchCmd) Run(ctx context.Context, g *Globals) error {
	f, err := newFetchJob(ctx, g.logger, c.SpoolFlags, c.FetchFlags, nil)
	if err != nil {
		return err
	}
	defer f.close()
	prog := newProgress(g.Progress, g.logger)
	prog.add(f)
	if c.MetricsAddr != "" {
		prog.alwaysTick()
		if err := serveMetrics(ctx, c.MetricsAddr, &collector{fetch: f}, prog, g.logger); err != nil {
			return err
		}
	}
	prog.start()
	err = f.run(ctx)
	prog.stop()
	f.summary(os.Stderr)
	return err
}

// fetchState is the spool's fetch.json: what the last fetch was doing, for `load --follow` in
// another process and for `status`.
type fetchState struct {
	Relay     string    `json:"relay"`
	Status    string    `json:"status"` // running, done, interrupted, failed
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Head      int64     `json:"head,omitempty"`
	StopSeq   int64     `json:"stop_seq,omitempty"`
	LastSeq   int64     `json:"last_seq,omitempty"`
	Error     string    `json:"error,omitempty"`
}

const fetchStateFile = "fetch.json"

// fetchJob is one configured fetch: spool open, start and stop points decided.
type fetchJob struct {
	log     *slog.Logger
	flags   FetchFlags
	dir     string
	spool   *spool.Spool
	writer  *spool.Writer
	cfg     firehose.Config
	stats   firehose.Stats
	host    string
	started time.Time
	state   fetchState
	prev    fetchSnap // the progress display's previous reading

	resumeFrom resumeFunc // --resume with an empty spool: where the database says to go on (nil: nowhere)
	deletes    *deletes.Collector
}

// resumeFunc returns the seq (0: none) and event time after which --resume goes on from relay
// host when the spool is empty.
type resumeFunc func(ctx context.Context, host string) (int64, time.Time, error)

// indexedSink hands each frame to the delete index before the spool writer, which seals
// segments (and so has their index written) before it appends the frame that does not fit.
type indexedSink struct {
	w  *spool.Writer
	dc *deletes.Collector
}

func (s indexedSink) Append(seq int64, t time.Time, frame []byte) error {
	s.dc.Add(seq, frame)
	return s.w.Append(seq, t, frame)
}

func (s indexedSink) Flush() error { return s.w.Flush() }

// newFetchJob checks the flags, opens the spool and works out where to start and stop.
// It talks to the relay (probes) but stores nothing yet. resumeFrom, when not nil, says where
// --resume goes on if the spool is empty (the database's record of what was loaded).
func newFetchJob(ctx context.Context, log *slog.Logger, sf SpoolFlags, ff FetchFlags, resumeFrom resumeFunc) (*fetchJob, error) {
	if ff.Days < -1 {
		return nil, fmt.Errorf("--days %d: use N>0 for the last N days, -1 for all history, 0 to disable", ff.Days)
	}
	if ff.StartCursor < 0 || ff.UntilCursor < 0 {
		return nil, errors.New("--start-cursor and --until-cursor must not be negative")
	}
	if ff.UntilCursor > 0 && ff.StartCursor > ff.UntilCursor {
		return nil, fmt.Errorf("--start-cursor %d is after --until-cursor %d", ff.StartCursor, ff.UntilCursor)
	}
	endpoint, err := firehose.Endpoint(ff.RelayURL)
	if err != nil {
		return nil, err
	}
	host := firehose.Host(endpoint)
	// The delete index of each segment is written as the writer seals it (package deletes).
	dc := deletes.NewCollector()
	sp, err := spool.Open(sf.Spool, spool.Options{
		SegmentBytes: ff.SegmentSize,
		SegmentAge:   ff.SegmentAge,
		Level:        zstdLevel(ff.ZstdLevel),
		OnSeal:       dc.OnSeal,
	})
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	// The lock is this process's: what an interrupted fetch left of a sidecar goes.
	if n, err := deletes.RemoveTemps(sp.SegmentDir()); err != nil {
		log.Warn("leftover delete index files not removed", "err", err)
	} else if n > 0 {
		log.Info("removed the unfinished delete index files of an interrupted fetch", "files", n)
	}
	j := &fetchJob{log: log, flags: ff, dir: sf.Spool, spool: sp, host: host, resumeFrom: resumeFrom, deletes: dc}
	if err := j.plan(ctx, endpoint); err != nil {
		sp.Close()
		return nil, err
	}
	// The writer recovers a torn tail of the open segment; the plan above read the same tail.
	if j.writer, err = sp.NewWriter(host); err != nil {
		sp.Close()
		return nil, fmt.Errorf("open spool writer: %w", err)
	}
	if rec := j.writer.Recovered(); rec.Path != "" && !rec.Removed {
		// The segment an interrupted fetch left open is sealed now, without the delete index
		// of the frames it holds: read them back for it.
		if segs, err := sp.Segments(); err == nil && len(segs) > 0 {
			last := segs[len(segs)-1]
			if _, err := deletes.Read(last); err != nil {
				if err := deletes.Build(last); err != nil {
					log.Warn("delete index not written", "segment", last.Name, "err", err)
				}
			}
		}
	}
	return j, nil
}

// plan decides the cursor, window and stop points.
func (j *fetchJob) plan(ctx context.Context, endpoint *url.URL) error {
	ff := j.flags
	if r := j.spool.Relay(); r != "" && r != j.host {
		return fmt.Errorf("spool %s holds frames from relay %s, not %s: a cursor means nothing on another relay; use another --spool", j.dir, r, j.host)
	}
	tail, err := j.spool.Tail()
	if err != nil {
		return fmt.Errorf("read spool tail: %w", err)
	}
	cfg := firehose.Config{
		Endpoint:       endpoint,
		StopSeq:        ff.UntilCursor,
		StopTime:       ff.Until,
		Follow:         ff.Follow,
		IdleTimeout:    ff.IdleTimeout,
		Dial:           firehose.DialOptions{ReadTimeout: ff.ReadTimeout},
		MaxBytesPerSec: ff.MaxFetchBytes,
		Logger:         j.log,
	}
	prober := &firehose.Prober{Endpoint: endpoint, Dial: cfg.Dial, Logger: j.log}
	var head firehose.Point
	if !ff.Follow && ff.Days > 0 && tail.Empty && ff.StartCursor == 0 && !ff.Resume {
		// The --days search is quicker with the head as its upper bound.
		if pt, ok, err := prober.Head(ctx); err != nil {
			return fmt.Errorf("read the relay's head: %w", err)
		} else if ok {
			head = pt
			cfg.Head = pt.Seq
			j.log.Info("relay head", "relay", j.host, "seq", pt.Seq, "time", pt.Time.Format(time.RFC3339))
		}
	}
	if !ff.Follow && cfg.Head == 0 {
		// Read the head while fetching; on a quiet relay the replay going idle ends the fetch.
		cfg.HeadProbe = &firehose.Prober{Endpoint: endpoint, Dial: cfg.Dial, Logger: j.log}
	}
	switch {
	case !tail.Empty:
		c := tail.Seq
		cfg.Cursor, cfg.After, cfg.AfterTime = &c, tail.Seq, tail.Time
		if ff.Resume {
			j.log.Info("resuming from the spool's last durable frame", "seq", tail.Seq, "time", tail.Time.Format(time.RFC3339))
		} else {
			j.log.Info("spool already holds this relay's frames: continuing from its tail", "seq", tail.Seq, "time", tail.Time.Format(time.RFC3339))
			if ff.Days != 0 || ff.StartCursor != 0 {
				j.log.Warn("--days and --start-cursor are ignored when the spool already holds frames; use a new --spool for a different range")
			}
		}
	case ff.Resume && j.resumeFrom != nil:
		c, t, err := j.resumeFrom(ctx, j.host)
		if err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		if c <= 0 {
			return fmt.Errorf("--resume: spool %s holds no frames and the database records nothing loaded to resume from; start with --days, --start-cursor or --follow", j.dir)
		}
		cfg.Cursor, cfg.After, cfg.AfterTime = &c, c, t
		j.log.Info("resuming after the database's last loaded seq (the spool is empty)", "seq", c)
	case ff.Resume:
		return fmt.Errorf("--resume: spool %s holds no frames to resume from; start a fetch with --days, --start-cursor or --follow", j.dir)
	case ff.StartCursor > 0:
		c := ff.StartCursor
		cfg.Cursor = &c
		j.log.Info("starting at cursor", "cursor", c)
	case ff.Days > 0:
		cutoff := time.Now().Add(-time.Duration(ff.Days) * 24 * time.Hour)
		w, err := prober.FindStart(ctx, cutoff, head)
		if err != nil {
			return fmt.Errorf("find the start of the last %d days: %w", ff.Days, err)
		}
		switch {
		case w.Empty:
			return fmt.Errorf("the relay holds no event since %s", cutoff.Format(time.RFC3339))
		case w.OutOfReach > 0:
			j.log.Warn(fmt.Sprintf("the relay's oldest event is from %s: %s of the requested %d days is out of its reach (relays keep about 72 hours); starting from its oldest event",
				w.Oldest.Time.Format(time.RFC3339), w.OutOfReach.Round(time.Minute), ff.Days),
				"oldest_seq", w.Oldest.Seq)
		}
		c := w.Cursor
		cfg.Cursor = &c
		cfg.MinTime = cutoff
		j.log.Info("found the start of the window", "days", ff.Days, "since", cutoff.Format(time.RFC3339), "cursor", c, "probes", prober.Probes)
	case ff.Days == -1:
		zero := int64(0)
		cfg.Cursor = &zero
		j.log.Info("fetching everything the relay still holds")
	case ff.Follow:
		j.log.Info("tailing the live stream")
	default:
		return errors.New("nothing to fetch: give --days N, --days -1, --start-cursor SEQ, --resume or --follow")
	}
	j.cfg = cfg
	return nil
}

// run fetches and seals; the final seal and state write run even after ctx is cancelled.
func (j *fetchJob) run(ctx context.Context) (err error) {
	j.started = time.Now()
	j.state = fetchState{Relay: j.host, Status: "running", PID: os.Getpid(), StartedAt: j.started, Head: j.cfg.Head, StopSeq: j.cfg.StopSeq}
	if err := j.saveState(); err != nil {
		return err
	}
	w := j.writer
	ferr := firehose.Fetch(ctx, j.cfg, indexedSink{w, j.deletes}, &j.stats)

	// Make everything durable whatever happened: sealing does not look at ctx.
	cerr := w.Close()
	if err := j.deletes.Err(); err != nil {
		// Only the load's shortcut is lost (it writes those rows, then deletes them).
		j.log.Warn("delete index not written", "err", err)
	}
	j.state.UpdatedAt = time.Now()
	j.state.LastSeq = j.stats.LastSeq.Load()
	if stop := j.stats.StopSeq.Load(); stop > 0 {
		j.state.StopSeq = stop // the relay's head when it was read while fetching
	}
	switch {
	case ferr == nil:
		j.state.Status = "done"
	case ctx.Err() != nil:
		j.state.Status = "interrupted"
	default:
		j.state.Status = "failed"
		j.state.Error = ferr.Error()
	}
	serr := j.saveState()
	switch {
	case ferr != nil && ctx.Err() != nil:
		return errInterrupted
	case ferr != nil:
		return ferr
	case cerr != nil:
		return fmt.Errorf("seal spool: %w", cerr)
	}
	return serr
}

func (j *fetchJob) saveState() error {
	j.state.UpdatedAt = time.Now()
	return state.Save(filepath.Join(j.dir, fetchStateFile), j.state)
}

func (j *fetchJob) close() {
	if err := j.spool.Close(); err != nil {
		j.log.Error("close spool", "err", err)
	}
}

func zstdLevel(l int) zstd.EncoderLevel {
	return zstd.EncoderLevel(l)
}

func (j *fetchJob) name() string { return "fetch" }

// fetchSnap is what the previous view saw, for rates.
type fetchSnap struct{ frames, bytesIn, raw, disk, seq int64 }

func (j *fetchJob) snapshot() fetchSnap {
	s := fetchSnap{frames: j.stats.Frames.Load(), bytesIn: j.stats.BytesIn.Load(), seq: j.stats.LastSeq.Load()}
	if j.writer != nil {
		ws := j.writer.Stats()
		s.raw, s.disk = ws.RawBytes, ws.DiskBytes
	}
	return s
}

func (j *fetchJob) view(dt time.Duration) (done, total int64, line string, attrs []any) {
	now := j.snapshot()
	prev := j.prev
	j.prev = now
	st := &j.stats
	var ratio float64
	if now.disk > 0 {
		ratio = float64(now.raw) / float64(now.disk)
	}
	var evt time.Time
	if us := st.LastTime.Load(); us != 0 {
		evt = time.UnixMicro(us).UTC()
	}
	stop := st.StopSeq.Load()
	start := j.cfg.After
	if start == 0 && j.cfg.Cursor != nil {
		start = *j.cfg.Cursor
	}
	etaS := "?"
	if stop > 0 {
		total = stop - start
		done = now.seq - start
		etaS = eta(stop-now.seq, now.seq-prev.seq, dt)
	}
	line = fmt.Sprintf("%s fr/s  in %s/s  disk %s/s  %.2fx  seq %d  %s  lag %s  ETA %s",
		humanCount(float64(now.frames-prev.frames)/dt.Seconds()),
		humanBytes(int64(float64(now.bytesIn-prev.bytesIn)/dt.Seconds())),
		humanBytes(int64(float64(now.disk-prev.disk)/dt.Seconds())),
		ratio, now.seq, evt.Format("2006-01-02 15:04:05"), lagString(evt), etaS)
	attrs = []any{"frames", now.frames, "frames_per_s", int64(float64(now.frames-prev.frames) / dt.Seconds()),
		"mb_in_per_s", float64(now.bytesIn-prev.bytesIn) / dt.Seconds() / 1e6,
		"mb_disk_per_s", float64(now.disk-prev.disk) / dt.Seconds() / 1e6,
		"ratio", fmt.Sprintf("%.2f", ratio), "seq", now.seq, "event_time", evt.Format(time.RFC3339),
		"lag", lagString(evt), "stop_seq", stop, "eta", etaS}
	return done, total, line, attrs
}

// summary prints what the fetch did.
func (j *fetchJob) summary(w io.Writer) {
	st := &j.stats
	el := time.Since(j.started)
	var ws spool.WriterStats
	if j.writer != nil {
		ws = j.writer.Stats()
	}
	ratio := 0.0
	if ws.DiskBytes > 0 {
		ratio = float64(ws.RawBytes) / float64(ws.DiskBytes)
	}
	rows := [][]string{
		{"fetch", "relay " + j.host, ""},
		{"frames kept", fmt.Sprint(st.Kept.Load()), fmt.Sprintf("%.0f/s", float64(st.Kept.Load())/el.Seconds())},
		{"bytes received", humanBytes(st.BytesIn.Load()), fmt.Sprintf("%.1f MB/s", float64(st.BytesIn.Load())/el.Seconds()/1e6)},
		{"bytes on disk", humanBytes(ws.DiskBytes), fmt.Sprintf("%.2fx", ratio)},
		{"segments sealed", fmt.Sprint(ws.Segments), ""},
		{"last seq", fmt.Sprint(st.LastSeq.Load()), ""},
		{"duplicates / backwards", fmt.Sprintf("%d / %d", st.Duplicates.Load(), st.Backwards.Load()), ""},
		{"before window / unknown / bad", fmt.Sprintf("%d / %d / %d", st.BeforeStart.Load(), st.Unknown.Load(), st.BadFrames.Load()), ""},
		{"info / error frames", fmt.Sprintf("%d / %d", st.Infos.Load(), st.ErrorFrames.Load()), ""},
		{"reconnects", fmt.Sprint(st.Reconnects.Load()), ""},
		{"resumed far later (possible gaps)", fmt.Sprint(st.Gaps.Load()), ""},
		{"elapsed", el.Round(time.Millisecond).String(), ""},
	}
	fmt.Fprint(w, table(rows))
}
