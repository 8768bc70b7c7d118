package spool

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeSpool fills a spool in dir with several sealed segments and one open segment.
func writeSpool(t *testing.T, dir string) []rec {
	t.Helper()
	s := openSpool(t, dir, Options{SegmentBytes: 64 << 10, ChunkBytes: 8 << 10, Now: newClock().Now})
	w := newWriter(t, s)
	recs := makeRecords(rand.New(rand.NewPCG(4, 4)), 1, 200, 2000, newClock().Now())
	appendAll(t, w, recs)
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	w.abandon() // as if killed: the last segment stays open
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return recs
}

func sameSegments(t *testing.T, got, want []SegmentInfo) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d segments, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("segment %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestReindex(t *testing.T) {
	dir := t.TempDir()
	writeSpool(t, dir)
	listed, err := ListSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) < 3 {
		t.Fatalf("fixture has %d segments, want several", len(listed))
	}
	if l, _ := listDir(filepath.Join(dir, segmentsDir)); len(l.open) != 1 {
		t.Fatalf("fixture has open segments %v, want one", l.open)
	}
	s := openSpool(t, dir, Options{})
	before, err := s.Segments()
	if err != nil {
		t.Fatal(err)
	}
	sameSegments(t, before, listed)
	s.Close()

	t.Run("index deleted", func(t *testing.T) {
		if err := os.Remove(filepath.Join(dir, indexFile)); err != nil {
			t.Fatal(err)
		}
		s := openSpool(t, dir, Options{})
		n, err := s.Reindex(context.Background())
		if err != nil || n != len(listed) {
			t.Fatalf("Reindex = %d, %v; want %d", n, err, len(listed))
		}
		after, err := s.Segments()
		if err != nil {
			t.Fatal(err)
		}
		sameSegments(t, after, before)
		if got := s.Relay(); got != testRelay {
			t.Errorf("Relay() after reindex = %q", got)
		}
	})
	t.Run("copied elsewhere", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "copy")
		copyDir(t, dir, other)
		s := openSpool(t, other, Options{})
		got, err := s.Segments()
		if err != nil {
			t.Fatal(err)
		}
		want := make([]SegmentInfo, len(before))
		for i, info := range before {
			info.Path = filepath.Join(other, segmentsDir, info.Name)
			want[i] = info
		}
		sameSegments(t, got, want)
		if _, err := s.Reindex(context.Background()); err != nil {
			t.Fatal(err)
		}
		got, _ = s.Segments()
		sameSegments(t, got, want)
	})
	t.Run("file deleted", func(t *testing.T) {
		if err := os.Remove(before[1].Path); err != nil {
			t.Fatal(err)
		}
		s := openSpool(t, dir, Options{})
		got, err := s.Segments()
		if err != nil {
			t.Fatal(err)
		}
		sameSegments(t, got, append(append([]SegmentInfo{}, before[:1]...), before[2:]...))
	})
	t.Run("cancelled", func(t *testing.T) {
		s := openSpool(t, dir, Options{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.Reindex(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Reindex(cancelled) = %v, want context.Canceled", err)
		}
	})
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	openSpool(t, dir, Options{})
	s, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestClosed(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, s)
	appendAll(t, w, []rec{{Seq: 1, Frame: []byte("x")}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if infos, err := ListSegments(s.Dir()); err != nil || len(infos) != 1 {
		t.Errorf("Spool.Close did not seal the writer's segment: %v, %v", infos, err)
	}
	if err := w.Append(2, time.Time{}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if _, err := s.NewWriter(testRelay); !errors.Is(err, ErrClosed) {
		t.Errorf("NewWriter after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Segments(); !errors.Is(err, ErrClosed) {
		t.Errorf("Segments after Close = %v, want ErrClosed", err)
	}
}
