package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

type verifyResult struct {
	faults int
	errs   map[string]error // by segment file name, nil for a good one
}

func runVerify(t *testing.T, dir string) verifyResult {
	t.Helper()
	res := verifyResult{errs: map[string]error{}}
	n, err := Verify(context.Background(), dir, func(info SegmentInfo, err error) {
		if _, dup := res.errs[info.Name]; dup {
			t.Errorf("segment %s reported twice", info.Name)
		}
		res.errs[info.Name] = err
	})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	res.faults = n
	return res
}

// rewriteTrailer changes a sealed segment's trailer and recomputes its checksums, so that only
// the disagreement with the contents remains.
func rewriteTrailer(t *testing.T, b []byte, change func(*segStats)) []byte {
	t.Helper()
	b = bytes.Clone(b)
	trOff := len(b) - footerSize - trailerChunkSize
	st, reason := parseTrailerPayload(b[trOff+chunkHeaderSize:])
	if reason != "" {
		t.Fatal(reason)
	}
	change(&st)
	payload := appendTrailerPayload(nil, st)
	copy(b[trOff+chunkHeaderSize:], payload)
	ch, _ := parseChunkHeader(b[trOff:])
	ch.first, ch.last, ch.crc = st.first, st.last, crc32c(payload)
	ch.put(b[trOff:])
	return b
}

func TestVerify(t *testing.T) {
	good := t.TempDir()
	writeSpool(t, good)
	listed, err := ListSegments(good)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := listDir(filepath.Join(good, segmentsDir))
	openName := l.open[0]

	t.Run("good", func(t *testing.T) {
		res := runVerify(t, good)
		if res.faults != 0 || len(res.errs) != len(listed)+1 {
			t.Errorf("Verify of a good spool: %d faults, %d segments reported (%v); want 0 faults, %d segments", res.faults, len(res.errs), res.errs, len(listed)+1)
		}
	})

	victim := listed[1]
	other := t.TempDir() // segments of another spool, to mix in
	{
		s := openSpool(t, other, Options{})
		w, err := s.NewWriter("other.example.test")
		if err != nil {
			t.Fatal(err)
		}
		appendAll(t, w, []rec{{Seq: victim.FirstSeq + 1, Frame: []byte("a")}, {Seq: victim.LastSeq + 1, Frame: []byte("b")}})
		w.Close()
	}
	otherSeg := filepath.Join(other, segmentsDir, segmentName(victim.FirstSeq+1)+sealedExt)
	sameRelay := func(t *testing.T) []byte { // the other segment, relabelled with our relay
		s := openSpool(t, t.TempDir(), Options{})
		w := newWriter(t, s)
		appendAll(t, w, []rec{{Seq: victim.FirstSeq + 1, Frame: []byte("a")}, {Seq: victim.LastSeq + 1, Frame: []byte("b")}})
		w.Close()
		return readFile(t, filepath.Join(s.Dir(), segmentsDir, segmentName(victim.FirstSeq+1)+sealedExt))
	}

	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, seg string) // seg: the segments directory of a copy of the good spool
		faulty string                         // the segment that must be reported
		want   error
	}{
		{"chunk checksum", func(t *testing.T, seg string) {
			b := readFile(t, victim.Path)
			b[len(b)/2] ^= 1
			writeFile(t, filepath.Join(seg, victim.Name), b)
		}, victim.Name, ErrCorrupt},
		{"bad header", func(t *testing.T, seg string) {
			b := readFile(t, victim.Path)
			b[0] = 'X'
			writeFile(t, filepath.Join(seg, victim.Name), b)
		}, victim.Name, ErrCorrupt},
		{"trailer raw bytes", func(t *testing.T, seg string) {
			writeFile(t, filepath.Join(seg, victim.Name), rewriteTrailer(t, readFile(t, victim.Path), func(s *segStats) { s.raw++ }))
		}, victim.Name, ErrCorrupt},
		{"trailer count", func(t *testing.T, seg string) {
			writeFile(t, filepath.Join(seg, victim.Name), rewriteTrailer(t, readFile(t, victim.Path), func(s *segStats) { s.count-- }))
		}, victim.Name, ErrCorrupt},
		{"trailer body checksum", func(t *testing.T, seg string) {
			writeFile(t, filepath.Join(seg, victim.Name), rewriteTrailer(t, readFile(t, victim.Path), func(s *segStats) { s.bodyCRC ^= 1 }))
		}, victim.Name, ErrCorrupt},
		{"trailer last seq", func(t *testing.T, seg string) {
			writeFile(t, filepath.Join(seg, victim.Name), rewriteTrailer(t, readFile(t, victim.Path), func(s *segStats) { s.last++ }))
		}, victim.Name, ErrCorrupt},
		{"truncated", func(t *testing.T, seg string) {
			b := readFile(t, victim.Path)
			writeFile(t, filepath.Join(seg, victim.Name), b[:len(b)-1])
		}, victim.Name, ErrCorrupt},
		{"name", func(t *testing.T, seg string) {
			name := segmentName(victim.FirstSeq+1) + sealedExt
			if err := os.Rename(filepath.Join(seg, victim.Name), filepath.Join(seg, name)); err != nil {
				t.Fatal(err)
			}
		}, segmentName(victim.FirstSeq+1) + sealedExt, ErrCorrupt},
		{"malformed name", func(t *testing.T, seg string) {
			writeFile(t, filepath.Join(seg, "junk.seg"), readFile(t, victim.Path))
		}, "junk.seg", ErrCorrupt},
		{"overlapping seqs", func(t *testing.T, seg string) {
			writeFile(t, filepath.Join(seg, filepath.Base(otherSeg)), sameRelay(t))
		}, filepath.Base(otherSeg), ErrCorrupt},
		{"another relay", func(t *testing.T, seg string) {
			writeFile(t, filepath.Join(seg, filepath.Base(otherSeg)), readFile(t, otherSeg))
		}, filepath.Base(otherSeg), ErrRelayMismatch},
		{"open segment middle chunk", func(t *testing.T, seg string) {
			path := filepath.Join(seg, openName)
			b := readFile(t, path)
			h, _ := readHeader(bytes.NewReader(b), int64(len(b)), path)
			ch, _ := parseChunkHeader(b[h.size():])
			if int(h.size())+chunkHeaderSize+int(ch.stored) >= len(b) {
				t.Fatal("fixture's open segment has a single chunk")
			}
			b[h.size()+chunkHeaderSize+1] ^= 1
			writeFile(t, path, b)
		}, openName, ErrCorrupt},
		{"two open segments", func(t *testing.T, seg string) {
			writeFile(t, filepath.Join(seg, segmentName(1<<40)+openExt), readFile(t, filepath.Join(seg, openName)))
		}, openName, ErrCorrupt},
		{"open segment header", func(t *testing.T, seg string) {
			path := filepath.Join(seg, openName)
			b := readFile(t, path)
			binary.LittleEndian.PutUint16(b[8:], 99)
			writeFile(t, path, b)
		}, openName, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, good, dir)
			tc.break_(t, filepath.Join(dir, segmentsDir))
			res := runVerify(t, dir)
			err, ok := res.errs[tc.faulty]
			if !ok || !errors.Is(err, tc.want) {
				t.Errorf("segment %s reported with %v (reported: %v), want %v", tc.faulty, err, ok, tc.want)
			}
			if res.faults == 0 {
				t.Errorf("Verify found no fault")
			}
			t.Logf("%d faults; %s: %v", res.faults, tc.faulty, err)
		})
	}

	t.Run("torn tail of the open segment is no fault", func(t *testing.T) {
		dir := t.TempDir()
		copyDir(t, good, dir)
		path := filepath.Join(dir, segmentsDir, openName)
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte{kindData, 0, 0, 0, 1, 2, 3})
		f.Close()
		if res := runVerify(t, dir); res.faults != 0 {
			t.Errorf("Verify = %d faults (%v), want 0", res.faults, res.errs)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Verify(ctx, good, nil); !errors.Is(err, context.Canceled) {
			t.Errorf("Verify(cancelled) = %v, want context.Canceled", err)
		}
	})
}
