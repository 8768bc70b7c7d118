package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/backfill/backfill/deletes"
	"github.com/backfill/backfill/spool"
)

// SpoolCmd groups the spool maintenance commands.
type SpoolCmd struct {
	Ls      SpoolLsCmd      `cmd:"" help:"List sealed segments (from the files; works while a fetch runs)."`
	Verify  SpoolVerifyCmd  `cmd:"" help:"Check every checksum, seq order and count; exits non-zero on any fault."`
	Reindex SpoolReindexCmd `cmd:"" help:"Rebuild the index from the segment files alone (after copying a spool to another machine), and the delete index of segments without one."`
}

// SpoolLsCmd is `backfill spool ls`.
type SpoolLsCmd struct {
	SpoolFlags
	JSON bool `help:"Print JSON, one object per segment."`
}

// Run lists segments.
func (c *SpoolLsCmd) Run() error {
	segs, err := spool.ListSegments(c.Spool)
	if err != nil {
		return fmt.Errorf("list segments: %w", err)
	}
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		for _, s := range segs {
			if err := enc.Encode(segmentJSON(s)); err != nil {
				return err
			}
		}
		return nil
	}
	rows := [][]string{{"segment", "relay", "first seq", "last seq", "frames", "first event", "last event", "raw", "on disk", "ratio"}}
	var frames, raw, disk int64
	for _, s := range segs {
		rows = append(rows, []string{s.Name, s.Relay, fmt.Sprint(s.FirstSeq), fmt.Sprint(s.LastSeq), fmt.Sprint(s.Count),
			fmtTime(s.MinTime), fmtTime(s.MaxTime), humanBytes(s.RawBytes), humanBytes(s.FileBytes), ratioString(s.RawBytes, s.FileBytes)})
		frames += s.Count
		raw += s.RawBytes
		disk += s.FileBytes
	}
	rows = append(rows, []string{fmt.Sprintf("%d segments", len(segs)), "", "", "", fmt.Sprint(frames), "", "", humanBytes(raw), humanBytes(disk), ratioString(raw, disk)})
	fmt.Print(table(rows))
	return nil
}

// SpoolVerifyCmd is `backfill spool verify`.
type SpoolVerifyCmd struct {
	SpoolFlags
}

// Run verifies every segment.
func (c *SpoolVerifyCmd) Run(ctx context.Context) error {
	faults, err := spool.Verify(ctx, c.Spool, func(s spool.SegmentInfo, err error) {
		if err != nil {
			fmt.Printf("FAULT  %s: %v\n", s.Name, err)
			return
		}
		fmt.Printf("ok     %s  seq %d-%d  %d frames\n", s.Name, s.FirstSeq, s.LastSeq, s.Count)
	})
	if err != nil {
		return fmt.Errorf("verify spool %s: %w", c.Spool, err)
	}
	if faults > 0 {
		return fmt.Errorf("spool %s: %d faults", c.Spool, faults)
	}
	fmt.Println("spool verified: no fault")
	return nil
}

// SpoolReindexCmd is `backfill spool reindex`.
type SpoolReindexCmd struct {
	SpoolFlags
}

// Run rebuilds the index.
func (c *SpoolReindexCmd) Run(ctx context.Context) error {
	if _, err := os.Stat(c.Spool); err != nil {
		return fmt.Errorf("spool %s: %w", c.Spool, err)
	}
	s, err := spool.Open(c.Spool, spool.Options{})
	if errors.Is(err, spool.ErrLocked) {
		return fmt.Errorf("spool %s is in use by a running fetch; stop it before reindexing", c.Spool)
	}
	if err != nil {
		return fmt.Errorf("open spool: %w", err)
	}
	defer s.Close()
	if _, err := deletes.RemoveTemps(s.SegmentDir()); err != nil {
		return fmt.Errorf("reindex spool %s: %w", c.Spool, err)
	}
	n, err := s.Reindex(ctx)
	if err != nil {
		return fmt.Errorf("reindex spool %s: %w", c.Spool, err)
	}
	fmt.Printf("reindexed %d segments\n", n)
	built, err := buildDeleteIndexes(ctx, c.Spool)
	if err != nil {
		return err
	}
	fmt.Printf("built the delete index of %d segments (%d had one)\n", built, n-built)
	return nil
}

// buildDeleteIndexes writes the delete index (package deletes) of every sealed segment of dir
// that has none, or one that does not read back: a spool written before delete indexes, or a
// segment sealed by a recovery.
func buildDeleteIndexes(ctx context.Context, dir string) (int, error) {
	segs, err := spool.ListSegments(dir)
	if err != nil {
		return 0, fmt.Errorf("list segments: %w", err)
	}
	built := 0
	for _, s := range segs {
		if err := ctx.Err(); err != nil {
			return built, err
		}
		if _, err := deletes.Read(s); err == nil {
			continue
		}
		if err := deletes.Build(s); err != nil {
			return built, fmt.Errorf("build the delete index of %s: %w", s.Name, err)
		}
		built++
	}
	return built, nil
}

func segmentJSON(s spool.SegmentInfo) map[string]any {
	return map[string]any{
		"name": s.Name, "id": s.ID(), "relay": s.Relay, "first_seq": s.FirstSeq, "last_seq": s.LastSeq,
		"frames": s.Count, "min_time": s.MinTime, "max_time": s.MaxTime,
		"raw_bytes": s.RawBytes, "file_bytes": s.FileBytes, "checksum": fmt.Sprintf("%08x", s.Checksum),
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

func ratioString(raw, disk int64) string {
	if disk <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", float64(raw)/float64(disk))
}
