package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync/atomic"

	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/events"
	"github.com/bluesky-social/indigo/events/schedulers/sequential"
	"github.com/gorilla/websocket"
	"github.com/klauspost/compress/zstd"

	"github.com/backfill/backfill/deletes"
	"github.com/backfill/backfill/firehose"
	"github.com/backfill/backfill/relaytest"
	"github.com/backfill/backfill/spool"
)

var (
	benchFrames = flag.Int("bench-frames", 200_000, "events the fetch benchmark's relay generates")
	benchLevel  = flag.Int("bench-level", int(zstd.SpeedDefault), "zstd level of the fetch benchmark (1 fastest .. 4 best), for fetch and its ceiling alike")
)

// BenchmarkFetch reports, over one stream of realistic frames from a local relay, the fetch
// stage next to its ceilings, each measured in the same run:
//   - read:          a bare gorilla websocket reader that discards frames (the network ceiling)
//   - indigo:        indigo's events.HandleRepoStream with a no-op handler (what most consumers do)
//   - read+zstd:     read and zstd-compress at fetch's level into nothing (a compressing fetch's ceiling)
//   - fetch:         firehose.Fetch into a real spool (header scan, chunks, CRCs, fsync on seal)
//   - fetch process: the `backfill fetch` command as a child process, for its peak RSS
//
// Run it with: go test -run '^$' -bench BenchmarkFetch -benchtime 1x -timeout 30m .
func BenchmarkFetch(b *testing.B) {
	start := time.Now()
	r, err := relaytest.New(relaytest.Config{Seed: 42, Users: 1000, Events: *benchFrames})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var n, raw int64
	for _, f := range r.Log() {
		n++
		raw += int64(len(f.Bytes))
	}
	b.Logf("relay: %d frames, %.1f MB, mean %d B, generated in %s", n, float64(raw)/1e6, raw/n, time.Since(start).Round(time.Second))
	u, err := firehose.Endpoint(r.URL())
	if err != nil {
		b.Fatal(err)
	}
	// Frames the spool keeps: every frame with a seq of its own (#info frames carry none).
	var keep int64
	for _, f := range r.Log() {
		if f.Kind != relaytest.KindInfo {
			keep++
		}
	}
	report := func(name string, frames, bytes int64, d time.Duration) (fps float64) {
		fps = float64(frames) / d.Seconds()
		b.ReportMetric(fps, name+"_frames/s")
		b.ReportMetric(float64(bytes)/d.Seconds()/1e6, name+"_MB/s")
		b.Logf("%-14s %9.0f frames/s %7.1f MB/s  (%s)", name, fps, float64(bytes)/d.Seconds()/1e6, d.Round(time.Millisecond))
		return fps
	}
	var counter countWriter
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d := readAll(b, u, n, nil)
		readFPS := report("read", n, raw, d)

		d = indigoRead(b, u, n)
		report("indigo", n, raw, d)

		enc, err := zstd.NewWriter(&counter, zstd.WithEncoderLevel(zstd.EncoderLevel(*benchLevel)))
		if err != nil {
			b.Fatal(err)
		}
		d = readAll(b, u, n, enc)
		enc.Close()
		zstdFPS := report("read+zstd", n, raw, d)
		b.Logf("whole-stream zstd: %.3f bytes per raw byte (%.2fx)", float64(counter.n)/float64(raw), float64(raw)/float64(counter.n))

		dir := b.TempDir()
		dc := deletes.NewCollector() // the delete index, as backfill fetch writes it
		sp, err := spool.Open(dir, spool.Options{Level: zstd.EncoderLevel(*benchLevel), OnSeal: dc.OnSeal})
		if err != nil {
			b.Fatal(err)
		}
		w, err := sp.NewWriter(firehose.Host(u))
		if err != nil {
			b.Fatal(err)
		}
		zero := int64(0)
		var st firehose.Stats
		t0 := time.Now()
		if err := firehose.Fetch(context.Background(), firehose.Config{Endpoint: u, Cursor: &zero, Head: r.Head()}, indexedSink{w, dc}, &st); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		if err := dc.Err(); err != nil {
			b.Fatal(err)
		}
		d = time.Since(t0)
		sp.Close()
		if st.Kept.Load() != keep {
			b.Fatalf("fetch kept %d frames, want %d", st.Kept.Load(), keep)
		}
		fetchFPS := report("fetch", keep, st.KeptBytes.Load(), d)
		disk := dirSize(b, dir)
		b.ReportMetric(float64(disk)/float64(st.KeptBytes.Load()), "disk_bytes/raw_byte")
		b.ReportMetric(fetchFPS/zstdFPS, "fetch/read+zstd")
		b.ReportMetric(fetchFPS/readFPS, "fetch/read")
		b.Logf("on disk %.1f MB for %.1f MB raw: %.3f bytes per raw byte (%.2fx)", float64(disk)/1e6,
			float64(st.KeptBytes.Load())/1e6, float64(disk)/float64(st.KeptBytes.Load()), float64(st.KeptBytes.Load())/float64(disk))

		// The command itself, as a child process, for its peak RSS (the relay's memory is ours).
		pdir := b.TempDir()
		cmd := exec.Command(binary(b), "fetch", "--relay-url", r.URL(), "--spool", pdir, "--days", "-1", "--zstd-level", fmt.Sprint(*benchLevel),
			"--progress", "none", "--log-level", "warn", "--idle-timeout", "2s")
		cmd.Stderr = os.Stderr
		t0 = time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatalf("backfill fetch: %v", err)
		}
		hwm := watchHWM(cmd.Process.Pid)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("backfill fetch: %v", err)
		}
		d = time.Since(t0)
		rss := hwm() // KiB
		b.ReportMetric(float64(rss)/1024, "fetch_peak_RSS_MiB")
		b.Logf("backfill fetch process: %s wall (includes start, head probe and idle wait), peak RSS %.1f MiB", d.Round(time.Millisecond), float64(rss)/1024)
	}
}

// readAll reads n frames from cursor 0 with a bare gorilla reader, writing them to w if not nil.
func readAll(b *testing.B, u interface{ String() string }, n int64, w io.Writer) time.Duration {
	b.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(u.String()+"?cursor=0", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadLimit(firehose.MaxFrameBytes)
	buf := make([]byte, 0, 64<<10)
	t0 := time.Now()
	for i := int64(0); i < n; i++ {
		_, rd, err := conn.NextReader()
		if err != nil {
			b.Fatal(err)
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			k, err := rd.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+k]
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		if w != nil {
			if _, err := w.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	return time.Since(t0)
}

// indigoRead consumes n events with indigo's HandleRepoStream and a no-op handler.
func indigoRead(b *testing.B, u interface{ String() string }, n int64) time.Duration {
	b.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(u.String()+"?cursor=0", nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen int64
	done := errors.New("done")
	sched := sequential.NewScheduler("bench", func(context.Context, *events.XRPCStreamEvent) error {
		seen++
		if seen == n {
			return done
		}
		return nil
	})
	t0 := time.Now()
	err = events.HandleRepoStream(ctx, conn, sched, nil)
	d := time.Since(t0)
	if !errors.Is(err, done) {
		b.Fatalf("HandleRepoStream: %v after %d of %d events", err, seen, n)
	}
	return d
}

func dirSize(b *testing.B, dir string) int64 {
	b.Helper()
	segs, err := spool.ListSegments(dir)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, s := range segs {
		n += s.FileBytes
	}
	return n
}

// watchHWM samples the process's peak resident set (VmHWM, reset at exec) until it exits and
// returns a function giving the highest value seen, in KiB. getrusage's ru_maxrss is no good
// here: for a child it can include the parent's pages from before the exec.
func watchHWM(pid int) func() int64 {
	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		path := fmt.Sprintf("/proc/%d/status", pid)
		for {
			b, err := os.ReadFile(path)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					var kb int64
					fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
					if kb > peak.Load() {
						peak.Store(kb)
					}
				}
			}
			if strings.Contains(string(b), "State:\tZ") {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() int64 {
		<-done
		return peak.Load()
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
