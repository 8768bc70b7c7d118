package spool

import (
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	var sealed []SegmentInfo
	opts := Options{
		SegmentBytes: 1 << 20,
		SegmentAge:   2 * time.Second,
		ChunkBytes:   32 << 10,
		Now:          clk.Now,
		OnSeal:       func(i SegmentInfo) { sealed = append(sealed, i) },
	}
	s := openSpool(t, dir, opts)
	w := newWriter(t, s)
	rng := rand.New(rand.NewPCG(1, 1))
	recs := makeRecords(rng, 1000, 3000, 6000, clk.Now())
	big := randBytes(rng, 5<<20) // a 5 MiB frame, alone in a chunk far above ChunkBytes
	recs[1500].Frame = big
	for i, r := range recs {
		if i%100 == 99 {
			clk.Advance(700 * time.Millisecond) // so some segments roll by age, not size
		}
		if err := w.Append(r.Seq, r.Time, r.Frame); err != nil {
			t.Fatalf("Append(%d): %v", r.Seq, err)
		}
		if got := w.LastSeq(); got != r.Seq {
			t.Fatalf("LastSeq after Append(%d) = %d", r.Seq, got)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	t.Run("records", func(t *testing.T) {
		sameRecords(t, readSpool(t, dir), recs)
	})
	t.Run("infos", func(t *testing.T) {
		infos, err := ListSegments(dir)
		if err != nil {
			t.Fatal(err)
		}
		indexed, err := s.Segments()
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) < 4 || len(indexed) != len(infos) || len(sealed) != len(infos) {
			t.Fatalf("got %d segments listed, %d indexed, %d OnSeal calls; want the same number, at least 4", len(infos), len(indexed), len(sealed))
		}
		var bySize, byAge int
		var raw, disk int64
		i := 0
		for n, info := range infos {
			if indexed[n] != info || sealed[n] != info {
				t.Errorf("segment %d: listed %+v, indexed %+v, OnSeal %+v", n, info, indexed[n], sealed[n])
			}
			want := recs[i : i+int(info.Count)]
			i += int(info.Count)
			checkInfo(t, info, want)
			if info.RawBytes >= opts.SegmentBytes {
				bySize++
			} else if n < len(infos)-1 {
				byAge++
			}
			raw += info.RawBytes
			disk += info.FileBytes
		}
		if i != len(recs) {
			t.Errorf("segments count %d records, want %d", i, len(recs))
		}
		if bySize == 0 || byAge == 0 {
			t.Errorf("%d segments rolled by size and %d by age, want some of each", bySize, byAge)
		}
		st := w.Stats()
		want := WriterStats{Frames: int64(len(recs)), RawBytes: raw, DiskBytes: disk, Segments: int64(len(infos)), Chunks: st.Chunks}
		if st != want {
			t.Errorf("Stats() = %+v, want %+v", st, want)
		}
		if st.Chunks < int64(len(infos)) || st.Chunks > raw/int64(opts.ChunkBytes)+int64(len(infos)) {
			t.Errorf("Stats().Chunks = %d, not plausible for %d raw bytes in %d-byte chunks", st.Chunks, raw, opts.ChunkBytes)
		}
	})
	t.Run("id", func(t *testing.T) {
		info := sealed[0]
		want := testRelay + "/" + itoa(info.FirstSeq) + "-" + itoa(info.LastSeq) + "/"
		if id := info.ID(); !strings.HasPrefix(id, want) || len(id) != len(want)+8 {
			t.Errorf("ID() = %q, want %q followed by 8 hex digits", id, want)
		}
	})
}

func itoa(v int64) string { return strings.TrimLeft(segmentName(v), "0") }

// checkInfo compares a segment's info with the records it should hold.
func checkInfo(t *testing.T, info SegmentInfo, want []rec) {
	t.Helper()
	var minT, maxT time.Time
	var raw int64
	for _, r := range want {
		raw += int64(recordHeaderSize + len(r.Frame))
		if r.Time.IsZero() {
			continue
		}
		if minT.IsZero() || r.Time.Before(minT) {
			minT = r.Time
		}
		if r.Time.After(maxT) {
			maxT = r.Time
		}
	}
	last := want[len(want)-1]
	fi, err := os.Stat(info.Path)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case info.Name != segmentName(want[0].Seq)+".seg":
		t.Errorf("Name = %q, want %q", info.Name, segmentName(want[0].Seq)+".seg")
	case info.Relay != testRelay:
		t.Errorf("%s: Relay = %q", info.Name, info.Relay)
	case info.FirstSeq != want[0].Seq || info.LastSeq != last.Seq || info.Count != int64(len(want)):
		t.Errorf("%s: seqs %d-%d count %d, want %d-%d count %d", info.Name, info.FirstSeq, info.LastSeq, info.Count, want[0].Seq, last.Seq, len(want))
	case !info.MinTime.Equal(minT) || !info.MaxTime.Equal(maxT) || !info.LastTime.Equal(last.Time):
		t.Errorf("%s: times %s %s %s, want %s %s %s", info.Name, info.MinTime, info.MaxTime, info.LastTime, minT, maxT, last.Time)
	case info.RawBytes != raw:
		t.Errorf("%s: RawBytes = %d, want %d", info.Name, info.RawBytes, raw)
	case info.FileBytes != fi.Size():
		t.Errorf("%s: FileBytes = %d, file has %d", info.Name, info.FileBytes, fi.Size())
	}
}

func TestAppendRefused(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	w := newWriter(t, s)
	if err := w.Append(10, time.Time{}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		seq   int64
		frame []byte
		want  error
	}{
		{"repeated", 10, []byte("y"), ErrOutOfOrder},
		{"backward", 9, []byte("y"), ErrOutOfOrder},
		{"negative", -1, []byte("y"), ErrOutOfOrder},
		{"too large", 11, make([]byte, MaxFrameBytes+1), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := w.Append(tc.seq, time.Time{}, tc.frame); !errors.Is(err, tc.want) {
				t.Errorf("Append(%d) = %v, want %v", tc.seq, err, tc.want)
			}
			if got := w.LastSeq(); got != 10 {
				t.Errorf("LastSeq() = %d after a refused Append, want 10", got)
			}
		})
	}
	t.Run("zero first seq", func(t *testing.T) {
		s := openSpool(t, t.TempDir(), Options{})
		w := newWriter(t, s)
		if err := w.Append(0, time.Time{}, nil); !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("Append(0) = %v, want ErrOutOfOrder", err)
		}
	})
	t.Run("below sealed after reopen", func(t *testing.T) {
		dir := t.TempDir()
		s := openSpool(t, dir, Options{})
		w := newWriter(t, s)
		appendAll(t, w, []rec{{Seq: 5, Frame: []byte("a")}, {Seq: 6, Frame: []byte("b")}})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openSpool(t, dir, Options{})
		w = newWriter(t, s)
		if got := w.LastSeq(); got != 6 {
			t.Errorf("LastSeq() of a new writer = %d, want 6", got)
		}
		if err := w.Append(6, time.Time{}, nil); !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("Append(6) = %v, want ErrOutOfOrder", err)
		}
	})
}

func TestRelayMismatch(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	if got := s.Relay(); got != "" {
		t.Errorf("Relay() of an empty spool = %q", got)
	}
	w := newWriter(t, s)
	appendAll(t, w, []rec{{Seq: 1, Frame: []byte("a")}})
	if _, err := s.NewWriter(testRelay); !errors.Is(err, ErrBusy) {
		t.Errorf("second NewWriter = %v, want ErrBusy", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	t.Run("new writer", func(t *testing.T) {
		_, err := s.NewWriter("other.example.test")
		if !errors.Is(err, ErrRelayMismatch) {
			t.Fatalf("NewWriter(other) = %v, want ErrRelayMismatch", err)
		}
		if msg := err.Error(); !strings.Contains(msg, testRelay) || !strings.Contains(msg, "other.example.test") {
			t.Errorf("error %q does not name both relays", msg)
		}
	})
	t.Run("reopened", func(t *testing.T) {
		s.Close()
		s := openSpool(t, dir, Options{})
		if got := s.Relay(); got != testRelay {
			t.Errorf("Relay() = %q, want %q", got, testRelay)
		}
		if _, err := s.NewWriter("other.example.test"); !errors.Is(err, ErrRelayMismatch) {
			t.Errorf("NewWriter(other) = %v, want ErrRelayMismatch", err)
		}
	})
	t.Run("open segment of another relay", func(t *testing.T) {
		other := t.TempDir()
		s := openSpool(t, other, Options{})
		w, err := s.NewWriter("other.example.test")
		if err != nil {
			t.Fatal(err)
		}
		appendAll(t, w, []rec{{Seq: 1, Frame: []byte("a")}})
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
		fresh := t.TempDir()
		writeFile(t, fresh+"/segments/"+segmentName(1)+".open", readFile(t, other+"/segments/"+segmentName(1)+".open"))
		s2 := openSpool(t, fresh, Options{})
		if _, err := s2.NewWriter(testRelay); !errors.Is(err, ErrRelayMismatch) {
			t.Errorf("NewWriter over an open segment of another relay = %v, want ErrRelayMismatch", err)
		}
	})
	t.Run("segments of two relays", func(t *testing.T) {
		other := t.TempDir()
		s := openSpool(t, other, Options{})
		w, err := s.NewWriter("other.example.test")
		if err != nil {
			t.Fatal(err)
		}
		appendAll(t, w, []rec{{Seq: 100, Frame: []byte("a")}})
		s.Close()
		mixed := t.TempDir()
		copyDir(t, dir+"/segments", mixed+"/segments")
		copyDir(t, other+"/segments", mixed+"/segments")
		if _, err := Open(mixed, Options{}); !errors.Is(err, ErrRelayMismatch) {
			t.Errorf("Open(mixed relays) = %v, want ErrRelayMismatch", err)
		}
	})
}

func TestFlushAndTail(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	tail, err := s.Tail()
	if err != nil || !tail.Empty {
		t.Fatalf("Tail() of an empty spool = %+v, %v; want Empty", tail, err)
	}
	w := newWriter(t, s)
	t0 := newClock().Now()
	appendAll(t, w, []rec{{Seq: 1, Time: t0, Frame: []byte("a")}, {Seq: 2, Time: t0.Add(time.Second), Frame: []byte("b")}})
	if tail, err := s.Tail(); err != nil || !tail.Empty {
		t.Errorf("Tail() before Flush = %+v, %v; want Empty (nothing durable)", tail, err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	appendAll(t, w, []rec{{Seq: 3, Frame: []byte("c")}})
	want := Tail{Seq: 2, Time: t0.Add(time.Second), Frames: 2}
	if tail, err := s.Tail(); err != nil || tail != want {
		t.Errorf("Tail() after Flush = %+v, %v; want %+v", tail, err, want)
	}
	if err := w.Seal(); err != nil {
		t.Fatal(err)
	}
	want = Tail{Seq: 3, Frames: 3}
	if tail, err := s.Tail(); err != nil || tail != want {
		t.Errorf("Tail() after Seal = %+v, %v; want %+v", tail, err, want)
	}
	if err := w.Seal(); err != nil {
		t.Errorf("Seal of an empty segment = %v, want a no-op", err)
	}
	appendAll(t, w, []rec{{Seq: 7, Time: t0, Frame: []byte("d")}})
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	want = Tail{Seq: 7, Time: t0, Frames: 4}
	if tail, err := s.Tail(); err != nil || tail != want {
		t.Errorf("Tail() with an open segment after a sealed one = %+v, %v; want %+v", tail, err, want)
	}
	if infos, _ := s.Segments(); len(infos) != 1 {
		t.Errorf("Segments() = %d segments, want 1 (a second Seal must not make an empty one)", len(infos))
	}
}

func TestOptionsRefused(t *testing.T) {
	for name, opts := range map[string]Options{
		"negative segment bytes": {SegmentBytes: -1},
		"negative age":           {SegmentAge: -time.Second},
		"huge chunk":             {ChunkBytes: MaxChunkBytes + 1},
		"level":                  {Level: 9},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Open(t.TempDir(), opts); err == nil {
				t.Errorf("Open(%+v) succeeded, want an error", opts)
			}
		})
	}
}

// TestConcurrentReaders reads the spool in every way while a writer appends and rolls segments;
// run it with -race.
func TestConcurrentReaders(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{SegmentBytes: 32 << 10, ChunkBytes: 4 << 10})
	w := newWriter(t, s)
	recs := makeRecords(rand.New(rand.NewPCG(6, 6)), 1, 1500, 1000, newClock().Now())
	done := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		var lastTail int64
		for {
			select {
			case <-done:
				return
			default:
			}
			tail, err := s.Tail()
			if err == nil && tail.Seq < lastTail {
				err = errors.New("Tail went backwards")
			}
			lastTail = tail.Seq
			if err == nil {
				_, err = s.Segments()
			}
			if err == nil {
				_, err = ListSegments(dir)
			}
			if err == nil {
				var n int
				n, err = Verify(t.Context(), dir, nil)
				if err == nil && n != 0 {
					err = errors.New("Verify found faults in a live spool")
				}
			}
			if err == nil && w.Stats().Frames < 0 {
				err = errors.New("negative frame count")
			}
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	for i, r := range recs {
		appendAll(t, w, []rec{r})
		if i%50 == 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	if err := <-errs; err != nil {
		t.Errorf("reader: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sameRecords(t, readSpool(t, dir), recs)
}
