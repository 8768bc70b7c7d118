package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/backfill/backfill/loader"
)

// RunCmd is `backfill run`, also the default command: fetch and load together, so that load
// follows fetch segment by segment and neither stage's speed throttles the other.
type RunCmd struct {
	SpoolFlags
	FetchFlags
	LoadFlags
	StopAtLive  bool   `help:"Stop where the live consumer started: at the cursor in its firehose_cursor row (read once at start), so backfill and live ingestion meet without a gap or double work."`
	LiveService string `help:"The live consumer's firehose_cursor.service, for --stop-at-live." default:"firehose"`
	MetricsFlags
}

// Run fetches and loads until the fetch reaches its stop point and every sealed segment is
// loaded, or the first fatal error in either stage, which stops both.
func (c *RunCmd) Run(ctx context.Context, g *Globals) error {
	cfg, err := c.LoadFlags.config(g)
	if err != nil {
		return err
	}
	ff := c.FetchFlags
	if c.StopAtLive {
		if ff.Follow {
			return errors.New("--stop-at-live and --follow contradict each other: the first stops where the live consumer began, the second never stops")
		}
		seq, ok, err := readCursor(ctx, cfg.DatabaseURL, c.LiveService)
		if err != nil {
			return fmt.Errorf("--stop-at-live: %w", err)
		}
		if !ok {
			return fmt.Errorf("--stop-at-live: no firehose_cursor row for service %q: is the live consumer running against this database? (--live-service names its row)", c.LiveService)
		}
		if ff.UntilCursor == 0 || seq < ff.UntilCursor {
			ff.UntilCursor = seq
		}
		g.logger.Info("stopping where the live consumer began", "service", c.LiveService, "cursor", seq)
	}
	l, err := loader.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer l.Close()

	// With --resume and an empty spool, the database's own record of what is loaded says where
	// to go on.
	resumeFrom := func(ctx context.Context, host string) (int64, time.Time, error) {
		return resumeCursor(ctx, cfg.DatabaseURL, cfg.Service, host)
	}
	f, err := newFetchJob(ctx, g.logger, c.SpoolFlags, ff, resumeFrom)
	if err != nil {
		return err
	}
	defer f.close()

	lj := &loadJob{l: l, started: time.Now()}
	prog := newProgress(g.Progress, g.logger)
	prog.add(f)
	prog.add(lj)
	if c.MetricsAddr != "" {
		prog.alwaysTick()
		if err := serveMetrics(ctx, c.MetricsAddr, &collector{fetch: f, load: lj}, prog, g.logger); err != nil {
			return err
		}
	}
	prog.start()

	var fetchDone atomic.Bool
	var sum loader.Summary
	grp, gctx := errgroup.WithContext(ctx)
	grp.Go(func() error {
		err := f.run(gctx)
		if err == nil {
			fetchDone.Store(true)
		}
		return err
	})
	grp.Go(func() error {
		var err error
		sum, err = l.Run(gctx, c.Spool, func() (bool, error) { return fetchDone.Load(), nil })
		return err
	})
	err = grp.Wait()
	prog.stop()
	f.summary(os.Stderr)
	printLoadSummary(os.Stderr, sum)
	if err != nil && ctx.Err() != nil {
		return errInterrupted
	}
	return err
}

// connectDB opens one connection for a short read; its error names the DSN with the password
// masked, and never repeats the DSN as given.
func connectDB(ctx context.Context, dsn string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		safe := loader.RedactDSN(dsn)
		return nil, fmt.Errorf("connect to %s: %s", safe, strings.ReplaceAll(err.Error(), dsn, safe))
	}
	return conn, nil
}

// readCursor reads firehose_cursor.cursor for service; ok is false when there is no such row
// or table.
func readCursor(ctx context.Context, dsn, service string) (seq int64, ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := connectDB(ctx, dsn)
	if err != nil {
		return 0, false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return readCursorOn(ctx, conn, service)
}

// readCursorOn is readCursor on an open connection.
func readCursorOn(ctx context.Context, conn *pgx.Conn, service string) (seq int64, ok bool, err error) {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('firehose_cursor') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, false, fmt.Errorf("look for firehose_cursor: %w", err)
	}
	if !exists {
		return 0, false, nil
	}
	var cur *string
	err = conn.QueryRow(ctx, `SELECT cursor FROM firehose_cursor WHERE service = $1`, service).Scan(&cur)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && (cur == nil || *cur == "")) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read firehose_cursor for %q: %w", service, err)
	}
	seq, err = strconv.ParseInt(strings.TrimSpace(*cur), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("firehose_cursor for %q holds %q, not a seq: %w", service, *cur, err)
	}
	return seq, true, nil
}

// resumeCursor returns where `run --resume` with an empty spool goes on from relay host, with
// that event's time when known: the loader's mark for that relay (backfill_loader), or, in a
// database this tool has not loaded from any relay, the firehose_cursor row of service (the
// replaced tool's checkpoint); 0 when there is neither. A database loaded only from other
// relays is an error: a cursor means nothing on another relay.
func resumeCursor(ctx context.Context, dsn, service, host string) (int64, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := connectDB(ctx, dsn)
	if err != nil {
		return 0, time.Time{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	type mark struct {
		seq int64
		t   time.Time // zero when unknown
	}
	marks := map[string]mark{}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('backfill_loader') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, time.Time{}, fmt.Errorf("look for backfill_loader: %w", err)
	}
	if exists {
		rows, err := conn.Query(ctx, `SELECT relay, seq, event_time FROM backfill_loader`)
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("read backfill_loader: %w", err)
		}
		for rows.Next() {
			var relay string
			var seq int64
			var t *time.Time
			if err := rows.Scan(&relay, &seq, &t); err != nil {
				rows.Close()
				return 0, time.Time{}, fmt.Errorf("read backfill_loader: %w", err)
			}
			m := mark{seq: seq}
			if t != nil {
				m.t = t.UTC()
			}
			marks[relay] = m
		}
		if err := rows.Err(); err != nil {
			return 0, time.Time{}, fmt.Errorf("read backfill_loader: %w", err)
		}
	}
	if m, ok := marks[host]; ok {
		return m.seq, m.t, nil
	}
	if len(marks) > 0 {
		relays := slices.Sorted(maps.Keys(marks))
		return 0, time.Time{}, fmt.Errorf("the spool is empty and the database holds what was loaded from %s, not from %s: a cursor means nothing on another relay; start with --days or --start-cursor", strings.Join(relays, ", "), host)
	}
	seq, _, err := readCursorOn(ctx, conn, service)
	return seq, time.Time{}, err
}
