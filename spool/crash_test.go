package spool

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// openFixture is an open segment as a killed writer leaves it.
type openFixture struct {
	name   string  // file name of the open segment
	data   []byte  // its bytes after the last Flush
	bounds []int64 // end of the header, then the end of each chunk
	counts []int   // records durable at each bound
	recs   []rec
}

// makeOpenFixture appends recs, flushing every per records, and captures the open segment.
func makeOpenFixture(t testing.TB, recs []rec, per int) openFixture {
	t.Helper()
	dir := t.TempDir()
	s := openSpool(t, dir, Options{Now: newClock().Now})
	w := newWriter(t, s)
	fx := openFixture{name: segmentName(recs[0].Seq) + openExt, recs: recs}
	path := filepath.Join(dir, segmentsDir, fx.name)
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	for i, r := range recs {
		appendAll(t, w, []rec{r})
		if i == 0 {
			fx.bounds, fx.counts = append(fx.bounds, size()), append(fx.counts, 0)
		}
		if (i+1)%per == 0 || i == len(recs)-1 {
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
			fx.bounds, fx.counts = append(fx.bounds, size()), append(fx.counts, i+1)
		}
	}
	fx.data = readFile(t, path)
	return fx
}

func fixtureRecords(t testing.TB) []rec {
	rng := rand.New(rand.NewPCG(3, 3))
	return makeRecords(rng, 500, 40, 3000, newClock().Now())
}

// cutDir returns a spool directory whose open segment is data.
func cutDir(t testing.TB, name string, data []byte) (dir, path string) {
	dir = t.TempDir()
	path = filepath.Join(dir, segmentsDir, name)
	writeFile(t, path, data)
	return dir, path
}

func TestTornTail(t *testing.T) {
	fx := makeOpenFixture(t, fixtureRecords(t), 7)
	if len(fx.bounds) < 6 {
		t.Fatalf("fixture has %d chunks, want at least 5", len(fx.bounds)-1)
	}
	type cut struct {
		at   int64
		keep int // records that must survive
	}
	var cuts []cut
	for i, b := range fx.bounds {
		cuts = append(cuts, cut{b, fx.counts[i]})
		if i+1 == len(fx.bounds) {
			break
		}
		next := fx.bounds[i+1]
		for _, at := range []int64{b + 1, b + chunkHeaderSize/2, b + chunkHeaderSize - 1, b + chunkHeaderSize, b + chunkHeaderSize + 1, (b + next) / 2, next - 1} {
			cuts = append(cuts, cut{at, fx.counts[i]})
		}
	}
	for _, c := range cuts {
		t.Run(fmt.Sprintf("cut=%d", c.at), func(t *testing.T) {
			dir, path := cutDir(t, fx.name, fx.data[:c.at])
			kept := fx.recs[:c.keep]
			var lastSeq int64
			if c.keep > 0 {
				lastSeq = kept[c.keep-1].Seq
			}
			s := openSpool(t, dir, Options{})

			tail, err := s.Tail()
			if err != nil {
				t.Fatalf("Tail: %v", err)
			}
			if want := (Tail{Seq: lastSeq, Frames: int64(c.keep), Empty: c.keep == 0}); c.keep > 0 {
				want.Time = kept[c.keep-1].Time
				if tail != want {
					t.Errorf("Tail() = %+v, want %+v", tail, want)
				}
			} else if tail != want {
				t.Errorf("Tail() = %+v, want %+v", tail, want)
			}
			if got := readFile(t, path); !bytes.Equal(got, fx.data[:c.at]) {
				t.Fatalf("Tail modified the open segment")
			}

			w := newWriter(t, s)
			rc := w.Recovered()
			bound := fx.bounds[0]
			for i, b := range fx.bounds {
				if fx.counts[i] == c.keep {
					bound = b
				}
			}
			want := Recovery{Path: path, Frames: int64(c.keep), TruncatedBytes: c.at - bound, Removed: c.keep == 0}
			rc.Torn = ""
			if rc != want {
				t.Errorf("Recovered() = %+v, want %+v", rc, want)
			}
			if got := w.LastSeq(); got != lastSeq {
				t.Errorf("LastSeq() after recovery = %d, want %d", got, lastSeq)
			}
			more := []rec{
				{Seq: lastSeq + 1, Frame: []byte("after the crash")},
				{Seq: lastSeq + 2, Time: newClock().Now(), Frame: []byte("and one more")},
			}
			appendAll(t, w, more)
			if err := w.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			sameRecords(t, readSpool(t, dir), append(append([]rec{}, kept...), more...))
			if n, err := Verify(t.Context(), dir, nil); n != 0 || err != nil {
				t.Errorf("Verify = %d faults, %v", n, err)
			}
		})
	}
}

func TestCorruptNotTorn(t *testing.T) {
	fx := makeOpenFixture(t, fixtureRecords(t), 7)
	flip := func(at int64) []byte {
		b := bytes.Clone(fx.data)
		b[at] ^= 0x40
		return b
	}
	mid := fx.bounds[2] // the third chunk starts here
	for _, tc := range []struct {
		name string
		at   int64
	}{
		{"payload of a middle chunk", (mid + fx.bounds[3]) / 2},
		{"length in a middle chunk header", mid + 5},
		{"kind of a middle chunk", mid},
		{"header checksum of a middle chunk", mid + 37},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := flip(tc.at)
			dir, path := cutDir(t, fx.name, data)
			s := openSpool(t, dir, Options{})
			_, err := s.NewWriter(testRelay)
			wantCorrupt(t, err, path, mid)
			if got := readFile(t, path); !bytes.Equal(got, data) {
				t.Errorf("failed recovery modified the file")
			}
			_, err = s.Tail()
			wantCorrupt(t, err, path, mid)
			n, err := Verify(t.Context(), dir, func(_ SegmentInfo, err error) {
				if err != nil {
					wantCorrupt(t, err, path, mid)
				}
			})
			if n != 1 || err != nil {
				t.Errorf("Verify = %d faults, %v; want 1", n, err)
			}
		})
	}
	t.Run("flip in the last chunk is a torn tail", func(t *testing.T) {
		last := len(fx.bounds) - 2
		dir, _ := cutDir(t, fx.name, flip((fx.bounds[last]+fx.bounds[last+1])/2))
		s := openSpool(t, dir, Options{})
		w := newWriter(t, s)
		if got, want := w.Recovered().Frames, int64(fx.counts[last]); got != want {
			t.Errorf("recovered %d frames, want %d", got, want)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		sameRecords(t, readSpool(t, dir), fx.recs[:fx.counts[last]])
	})
	t.Run("header", func(t *testing.T) {
		dir, path := cutDir(t, fx.name, flip(20))
		_, err := Open(dir, Options{}) // Open reads the open segment's header for its relay
		wantCorrupt(t, err, path, 0)
	})
}

func TestCorruptSealed(t *testing.T) {
	orig, chunks, trOff, path := sealedFixture(t)
	dir := filepath.Dir(filepath.Dir(path)) // the spool's
	second := chunks[1]
	first, _ := parseChunkHeader(orig[chunks[0]:])

	t.Run("middle chunk", func(t *testing.T) {
		b := bytes.Clone(orig)
		b[second+chunkHeaderSize+3] ^= 1
		writeFile(t, path, b)
		t.Cleanup(func() { writeFile(t, path, orig) })
		r, err := OpenSegment(path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		n := 0
		for ; ; n++ {
			if _, err = r.Next(); err != nil {
				break
			}
		}
		wantCorrupt(t, err, path, second)
		if n != int(first.count) {
			t.Errorf("read %d records before the error, want the %d of the first chunk", n, first.count)
		}
	})
	for _, tc := range []struct {
		name string
		at   int64
		off  int64
	}{
		{"trailer", trOff + chunkHeaderSize + 10, trOff},
		{"footer", int64(len(orig)) - 1, int64(len(orig)) - footerSize},
		{"header", 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(orig)
			b[tc.at] ^= 1
			writeFile(t, path, b)
			t.Cleanup(func() { writeFile(t, path, orig) })
			_, err := OpenSegment(path)
			wantCorrupt(t, err, path, tc.off)
			_, err = ListSegments(dir)
			wantCorrupt(t, err, path, tc.off)
		})
	}
}

func TestRecoverCases(t *testing.T) {
	// A sealed segment to play the open segment of a writer killed at various points of Seal.
	src := t.TempDir()
	s := openSpool(t, src, Options{ChunkBytes: 4096, Now: newClock().Now})
	w := newWriter(t, s)
	recs := fixtureRecords(t)
	appendAll(t, w, recs)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	infos, _ := s.Segments()
	sealed := readFile(t, infos[0].Path)
	openName := segmentName(recs[0].Seq) + openExt

	t.Run("killed before the rename", func(t *testing.T) {
		dir, _ := cutDir(t, openName, sealed)
		var got []SegmentInfo
		s := openSpool(t, dir, Options{OnSeal: func(i SegmentInfo) { got = append(got, i) }})
		w := newWriter(t, s)
		if rc := w.Recovered(); !rc.Sealed || rc.Frames != int64(len(recs)) || rc.TruncatedBytes != 0 {
			t.Errorf("Recovered() = %+v, want Sealed with %d frames", rc, len(recs))
		}
		idx, _ := s.Segments()
		if len(idx) != 1 || len(got) != 1 || idx[0] != got[0] || idx[0].Checksum != infos[0].Checksum {
			t.Errorf("after recovery: indexed %+v, OnSeal %+v, want the sealed segment %+v", idx, got, infos[0])
		}
		if w.LastSeq() != recs[len(recs)-1].Seq || w.Stats().Segments != 1 {
			t.Errorf("LastSeq() = %d, Stats() = %+v", w.LastSeq(), w.Stats())
		}
		w.Close()
		sameRecords(t, readSpool(t, dir), recs)
	})
	t.Run("killed while writing the footer", func(t *testing.T) {
		dir, _ := cutDir(t, openName, sealed[:len(sealed)-5])
		s := openSpool(t, dir, Options{})
		w := newWriter(t, s)
		if rc := w.Recovered(); rc.Sealed || rc.Frames != int64(len(recs)) || rc.TruncatedBytes != trailerChunkSize+footerSize-5 {
			t.Errorf("Recovered() = %+v, want %d frames and the trailer truncated", rc, len(recs))
		}
		more := rec{Seq: recs[len(recs)-1].Seq + 1, Frame: []byte("x")}
		appendAll(t, w, []rec{more})
		w.Close()
		sameRecords(t, readSpool(t, dir), append(append([]rec{}, recs...), more))
	})
	t.Run("header only", func(t *testing.T) {
		h, _ := readHeader(bytes.NewReader(sealed), int64(len(sealed)), "")
		dir, path := cutDir(t, openName, sealed[:h.size()])
		s := openSpool(t, dir, Options{})
		w := newWriter(t, s)
		if rc := w.Recovered(); !rc.Removed {
			t.Errorf("Recovered() = %+v, want Removed", rc)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("empty open segment still there: %v", err)
		}
		appendAll(t, w, []rec{{Seq: 1, Frame: []byte("x")}})
	})
	t.Run("leftover temporary file", func(t *testing.T) {
		dir := t.TempDir()
		tmp := filepath.Join(dir, segmentsDir, segmentName(9)+openExt+tmpExt)
		writeFile(t, tmp, []byte("half a header"))
		s := openSpool(t, dir, Options{})
		w := newWriter(t, s)
		if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("leftover %s still there: %v", tmp, err)
		}
		appendAll(t, w, []rec{{Seq: 9, Frame: []byte("x")}})
	})
	t.Run("two open segments", func(t *testing.T) {
		dir, _ := cutDir(t, openName, sealed)
		writeFile(t, filepath.Join(dir, segmentsDir, segmentName(1)+openExt), sealed)
		s := openSpool(t, dir, Options{})
		if _, err := s.NewWriter(testRelay); !errors.Is(err, ErrCorrupt) {
			t.Errorf("NewWriter = %v, want ErrCorrupt", err)
		}
	})
	t.Run("open segment overlapping a sealed one", func(t *testing.T) {
		dir, _ := cutDir(t, openName, sealed[:len(sealed)-1])
		writeFile(t, filepath.Join(dir, segmentsDir, infos[0].Name), sealed)
		s := openSpool(t, dir, Options{})
		if _, err := s.NewWriter(testRelay); !errors.Is(err, ErrCorrupt) {
			t.Errorf("NewWriter = %v, want ErrCorrupt", err)
		}
	})
	t.Run("recovered segment is sealed at once", func(t *testing.T) {
		h, _ := readHeader(bytes.NewReader(sealed), int64(len(sealed)), "")
		first, _ := parseChunkHeader(sealed[h.size():])
		cut := h.size() + chunkHeaderSize + int64(first.stored) + 7 // the first chunk and a torn one
		dir, path := cutDir(t, openName, sealed[:cut])
		var got []SegmentInfo
		s := openSpool(t, dir, Options{OnSeal: func(i SegmentInfo) { got = append(got, i) }})
		w := newWriter(t, s)
		if rc := w.Recovered(); rc.Sealed || rc.Frames != int64(first.count) || rc.TruncatedBytes != 7 {
			t.Errorf("Recovered() = %+v, want %d frames and 7 bytes truncated", rc, first.count)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("recovered open segment still open: %v", err)
		}
		idx, _ := s.Segments()
		if len(idx) != 1 || len(got) != 1 || idx[0] != got[0] || idx[0].Count != int64(first.count) || w.Stats().Segments != 1 {
			t.Fatalf("after recovery: indexed %+v, OnSeal %+v, Stats %+v; want the recovered segment", idx, got, w.Stats())
		}
		next := rec{Seq: w.LastSeq() + 1, Frame: []byte("x")}
		appendAll(t, w, []rec{next})
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, segmentsDir, segmentName(next.Seq)+openExt)); err != nil {
			t.Errorf("the frame after recovery is not in a new segment: %v", err)
		}
		w.Close()
		sameRecords(t, readSpool(t, dir), append(append([]rec{}, recs[:first.count]...), next))
	})
}
