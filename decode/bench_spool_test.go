package decode

import (
	"errors"
	"flag"
	"io"
	"os"
	"runtime"
	"testing"

	"github.com/backfill/backfill/spool"
)

var (
	benchSpoolDir    = flag.String("spool.dir", "/tmp/backfill-bench/spool-seed42-1000000", "spool directory that BenchmarkDecodeSpool reads")
	benchSpoolFrames = flag.Int("spool.frames", 200000, "frames of the spool that BenchmarkDecodeSpool decodes")
)

// spoolFrames reads the first n frames of the spool in dir into memory, each in its own slice.
func spoolFrames(b *testing.B, dir string, n int) [][]byte {
	b.Helper()
	segs, err := spool.ListSegments(dir)
	if err != nil {
		b.Fatal(err)
	}
	frames := make([][]byte, 0, n)
	for _, s := range segs {
		r, err := spool.OpenSegment(s.Path)
		if err != nil {
			b.Fatal(err)
		}
		for len(frames) < n {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			frames = append(frames, append([]byte(nil), rec.Frame...))
		}
		r.Close()
		if len(frames) == n {
			break
		}
	}
	return frames
}

// BenchmarkDecodeSpool decodes the first -spool.frames frames of the spool in -spool.dir (by
// default the 1M-frame spool of BenchmarkLoadLarge in the root package) with one Decoder on
// one goroutine. An op is one pass over those frames, read into memory first; frames/s,
// allocs/frame and B/frame are per frame, MB/s counts frame bytes.
func BenchmarkDecodeSpool(b *testing.B) {
	if _, err := os.Stat(*benchSpoolDir); err != nil {
		b.Skipf("no spool: %v", err)
	}
	frames := spoolFrames(b, *benchSpoolDir, *benchSpoolFrames)
	if len(frames) == 0 {
		b.Skip("empty spool")
	}
	total := 0
	for _, f := range frames {
		total += len(f)
	}
	d := NewDecoder(Options{})
	bad := 0
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.SetBytes(int64(total))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		bad = 0
		for _, f := range frames {
			ev, err := d.Decode(f)
			if err != nil {
				bad++
			}
			benchSink = ev
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	n := float64(b.N) * float64(len(frames))
	b.ReportMetric(n/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, "allocs/frame")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/n, "B/frame")
	b.ReportMetric(float64(bad), "bad_frames")
}
