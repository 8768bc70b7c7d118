package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/backfill/backfill/loader"
	"github.com/backfill/backfill/spool"
	"github.com/backfill/backfill/state"
)

// StatusCmd is `backfill status`.
type StatusCmd struct {
	SpoolFlags
	DatabaseURL string `help:"PostgreSQL URL; empty shows the spool only." env:"DATABASE_URL"`
	JSON        bool   `help:"Print one JSON object, for scripts."`
}

// statusReport is what status prints.
type statusReport struct {
	Spool struct {
		Dir       string      `json:"dir"`
		Relay     string      `json:"relay,omitempty"`
		Segments  int         `json:"segments"`
		Frames    int64       `json:"frames"`
		FirstSeq  int64       `json:"first_seq,omitempty"`
		LastSeq   int64       `json:"last_seq,omitempty"`
		FirstTime time.Time   `json:"first_time,omitzero"`
		LastTime  time.Time   `json:"last_time,omitzero"`
		RawBytes  int64       `json:"raw_bytes"`
		DiskBytes int64       `json:"disk_bytes"`
		Fetch     *fetchState `json:"fetch,omitempty"`
		Unloaded  int         `json:"segments_unloaded"`
		Error     string      `json:"error,omitempty"`
	} `json:"spool"`
	Database *dbStatus `json:"database,omitempty"`
}

type dbStatus struct {
	URL            string      `json:"url"`
	Cursors        []cursorRow `json:"cursors"`
	SegmentsLoaded int64       `json:"segments_loaded"`
	Marks          []markRow   `json:"loaded_up_to"`
	Error          string      `json:"error,omitempty"`
	loaded         map[string]bool
}

type cursorRow struct {
	Service   string    `json:"service"`
	Cursor    string    `json:"cursor"`
	EventTime time.Time `json:"last_event_time,omitzero"`
	Lag       string    `json:"lag,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

type markRow struct {
	Relay     string    `json:"relay"`
	Seq       int64     `json:"seq"`
	EventTime time.Time `json:"event_time,omitzero"`
	// Awaits is the last seq of the deletes that rows left out still await (0 when none do).
	Awaits int64 `json:"awaits_seq,omitzero"`
}

// Run prints the status.
func (c *StatusCmd) Run(ctx context.Context) error {
	var r statusReport
	r.Spool.Dir = c.Spool
	segs, err := spool.ListSegments(c.Spool)
	if err != nil {
		r.Spool.Error = err.Error()
	}
	for i, s := range segs {
		if i == 0 {
			r.Spool.FirstSeq, r.Spool.FirstTime = s.FirstSeq, s.MinTime
		}
		r.Spool.Relay = s.Relay
		r.Spool.LastSeq, r.Spool.LastTime = s.LastSeq, s.MaxTime
		r.Spool.Frames += s.Count
		r.Spool.RawBytes += s.RawBytes
		r.Spool.DiskBytes += s.FileBytes
	}
	r.Spool.Segments = len(segs)
	var fs fetchState
	if err := state.Load(filepath.Join(c.Spool, fetchStateFile), &fs); err == nil {
		if fs.Status == "running" && fs.PID > 0 && !processAlive(fs.PID) {
			fs.Status = "running (process gone)"
		}
		r.Spool.Fetch = &fs
		if r.Spool.Relay == "" {
			r.Spool.Relay = fs.Relay
		}
	} else if !errors.Is(err, state.ErrNotFound) {
		r.Spool.Error = err.Error()
	}
	if c.DatabaseURL != "" {
		r.Database = readDBStatus(ctx, c.DatabaseURL)
		for _, s := range segs {
			if !r.Database.loaded[segKey(s.Relay, s.FirstSeq, s.LastSeq, int64(s.Checksum))] {
				r.Spool.Unloaded++
			}
		}
	}
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	sp := r.Spool
	rows := [][]string{
		{"spool", sp.Dir},
		{"relay", orDash(sp.Relay)},
		{"segments", fmt.Sprintf("%d sealed, %d frames, %s raw, %s on disk (%s)", sp.Segments, sp.Frames, humanBytes(sp.RawBytes), humanBytes(sp.DiskBytes), ratioString(sp.RawBytes, sp.DiskBytes))},
		{"seq range", fmt.Sprintf("%d - %d", sp.FirstSeq, sp.LastSeq)},
		{"event times", fmt.Sprintf("%s - %s (lag %s)", fmtTime(sp.FirstTime), fmtTime(sp.LastTime), lagString(sp.LastTime))},
	}
	if f := sp.Fetch; f != nil {
		rows = append(rows, []string{"fetch", fmt.Sprintf("%s (pid %d, started %s, updated %s, last seq %d)", f.Status, f.PID, fmtTime(f.StartedAt), fmtTime(f.UpdatedAt), f.LastSeq)})
		if f.Error != "" {
			rows = append(rows, []string{"last fetch error", f.Error})
		}
	}
	if sp.Error != "" {
		rows = append(rows, []string{"spool error", sp.Error})
	}
	if d := r.Database; d != nil {
		rows = append(rows, []string{"database", d.URL})
		if d.Error != "" {
			rows = append(rows, []string{"database error", d.Error})
		}
		rows = append(rows, []string{"segments loaded", fmt.Sprintf("%d (%d of this spool not loaded yet)", d.SegmentsLoaded, sp.Unloaded)})
		for _, m := range d.Marks {
			rows = append(rows, []string{"loaded up to", fmt.Sprintf("%s seq %d (%s)", m.Relay, m.Seq, fmtTime(m.EventTime))})
			if m.Awaits > 0 {
				rows = append(rows, []string{"left out, awaiting", fmt.Sprintf("rows whose deletes come up to seq %d: load on to complete", m.Awaits)})
			}
		}
		for _, cr := range d.Cursors {
			rows = append(rows, []string{"cursor " + cr.Service, fmt.Sprintf("%s at %s, lag %s (updated %s)", cr.Cursor, fmtTime(cr.EventTime), orDash(cr.Lag), fmtTime(cr.UpdatedAt))})
		}
	}
	fmt.Print(table(rows))
	return nil
}

func segKey(relay string, first, last, checksum int64) string {
	return fmt.Sprintf("%s/%d/%d/%d", relay, first, last, checksum)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// readDBStatus reads the cursor rows and the loader's bookkeeping; errors are reported in the
// result, not returned, so status always prints what it could read.
func readDBStatus(ctx context.Context, dsn string) *dbStatus {
	d := &dbStatus{URL: loader.RedactDSN(dsn), loaded: map[string]bool{}}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := connectDB(ctx, dsn)
	if err != nil {
		d.Error = err.Error()
		return d
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var has [3]bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('firehose_cursor') IS NOT NULL,
		to_regclass('backfill_segments') IS NOT NULL, to_regclass('backfill_loader') IS NOT NULL`).Scan(&has[0], &has[1], &has[2]); err != nil {
		d.Error = err.Error()
		return d
	}
	if has[0] {
		rows, err := conn.Query(ctx, `SELECT service, coalesce(cursor, ''), last_event_time, updated_at FROM firehose_cursor ORDER BY service`)
		if err == nil {
			for rows.Next() {
				var cr cursorRow
				var et *time.Time
				if err := rows.Scan(&cr.Service, &cr.Cursor, &et, &cr.UpdatedAt); err != nil {
					d.Error = err.Error()
					break
				}
				if et != nil {
					cr.EventTime = et.UTC()
					cr.Lag = lagString(cr.EventTime)
				}
				d.Cursors = append(d.Cursors, cr)
			}
			rows.Close()
		}
		if err == nil {
			err = rows.Err()
		}
		if err != nil {
			d.Error = err.Error()
		}
	}
	if has[1] {
		rows, err := conn.Query(ctx, `SELECT relay, first_seq, last_seq, checksum FROM backfill_segments`)
		if err == nil {
			for rows.Next() {
				var relay string
				var first, last, sum int64
				if err := rows.Scan(&relay, &first, &last, &sum); err != nil {
					d.Error = err.Error()
					break
				}
				d.loaded[segKey(relay, first, last, sum)] = true
				d.SegmentsLoaded++
			}
			rows.Close()
		} else {
			d.Error = err.Error()
		}
	}
	if has[2] {
		// awaits_seq through to_jsonb: a table of an earlier version lacks it.
		rows, err := conn.Query(ctx, `SELECT relay, seq, event_time, coalesce((to_jsonb(l)->>'awaits_seq')::bigint, 0) FROM backfill_loader AS l ORDER BY relay`)
		if err == nil {
			for rows.Next() {
				var m markRow
				var et *time.Time
				if err := rows.Scan(&m.Relay, &m.Seq, &et, &m.Awaits); err != nil {
					d.Error = err.Error()
					break
				}
				if et != nil {
					m.EventTime = et.UTC()
				}
				if m.Awaits <= m.Seq {
					m.Awaits = 0
				}
				d.Marks = append(d.Marks, m)
			}
			rows.Close()
		} else {
			d.Error = err.Error()
		}
	}
	return d
}
