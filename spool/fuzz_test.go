package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// FuzzReader feeds arbitrary bytes to the sealed-segment reader and to the open-segment scan:
// each must return records or an error wrapping ErrCorrupt, never panic, and allocate no more
// than the input justifies.
func FuzzReader(f *testing.F) {
	dec, err := newDecoder()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		size := int64(len(data))
		r, err := newReader(bytes.NewReader(data), size, "fuzz.seg", dec)
		if err == nil {
			var n, prev int64
			for {
				rec, err := r.Next()
				if err == io.EOF {
					if n != r.Info().Count {
						t.Errorf("read %d records, trailer says %d", n, r.Info().Count)
					}
					break
				}
				if err != nil {
					if !errors.Is(err, ErrCorrupt) {
						t.Errorf("Next: %v, want ErrCorrupt", err)
					}
					break
				}
				if rec.Seq <= prev {
					t.Errorf("seq %d after %d", rec.Seq, prev)
				}
				prev = rec.Seq
				n++
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Errorf("newReader: %v, want ErrCorrupt", err)
		}

		sc, err := scanOpen(bytes.NewReader(data), size, "fuzz.open", dec)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("scanOpen: %v, want ErrCorrupt", err)
			}
			return
		}
		if sc.validEnd > size || (sc.torn == "") != (sc.validEnd == size || sc.sealed) {
			t.Fatalf("scanOpen: valid end %d of %d, torn %q, sealed %v", sc.validEnd, size, sc.torn, sc.sealed)
		}
		// What recovery keeps must scan clean and unchanged.
		again, err := scanOpen(bytes.NewReader(data[:sc.validEnd]), sc.validEnd, "fuzz.open", dec)
		if err != nil || again.torn != "" || again.st != sc.st {
			t.Errorf("rescan of the valid prefix: %+v, %v; first scan %+v", again, err, sc)
		}
	})
}

// fuzzPrefix is the open segment FuzzRecover appends arbitrary bytes to: three chunks of four
// small records, made with a fixed clock so the bytes never change.
func fuzzPrefix(t testing.TB) openFixture {
	return makeOpenFixture(t, makeRecords(rand.New(rand.NewPCG(5, 5)), 7, 12, 300, newClock().Now()), 4)
}

// FuzzRecover appends arbitrary bytes to an open segment of valid chunks and runs the recovery
// scan on it: it must fail with ErrCorrupt, or keep every valid record and end where a writer
// can carry on. The check then does in memory what the writer does on disk (truncate, append a
// chunk, seal) and reads the result back as a sealed segment. TestRecoverSeeds runs the seeds
// through the real NewWriter path; TestTornTail covers it at every chunk boundary.
func FuzzRecover(f *testing.F) {
	fx := fuzzPrefix(f)
	dec, err := newDecoder()
	if err != nil {
		f.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tail []byte) {
		recoverInMemory(t, fx, tail, dec, enc)
	})
}

func recoverInMemory(t *testing.T, fx openFixture, tail []byte, dec *zstd.Decoder, enc *zstd.Encoder) {
	keep := fx.counts[len(fx.counts)-1]
	data := append(bytes.Clone(fx.data), tail...)
	sc, err := scanOpen(bytes.NewReader(data), int64(len(data)), "fuzz.open", dec)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("scanOpen: %v, want ErrCorrupt", err)
		}
		return
	}
	if sc.st.count < int64(keep) || sc.validEnd < int64(len(fx.data)) {
		t.Fatalf("recovery keeps %d records up to offset %d, want at least %d up to %d", sc.st.count, sc.validEnd, keep, len(fx.data))
	}
	seg, st := data, sc.st
	var next *rec
	if !sc.sealed {
		next = &rec{Seq: st.last + 1, Frame: []byte("new")}
		raw := appendRecord(nil, next.Seq, 0, next.Frame)
		seg = data[:sc.validEnd:sc.validEnd]
		seg = appendChunk(enc, seg, raw, 1, next.Seq, next.Seq)
		st.addRecord(next.Seq, 0, len(raw))
		st.chunks++
		st.bodyCRC = crc32Update(st.bodyCRC, seg[sc.validEnd:])
		seg = appendSealing(seg, st, int64(len(seg)))
	}
	r, err := newReader(bytes.NewReader(seg), int64(len(seg)), "fuzz.seg", dec)
	if err != nil {
		t.Fatalf("recovered and sealed segment: %v", err)
	}
	var got []rec
	for {
		rc, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("recovered and sealed segment: %v", err)
		}
		got = append(got, rec{rc.Seq, rc.Time, bytes.Clone(rc.Frame)})
	}
	if int64(len(got)) != st.count {
		t.Fatalf("read %d records, want %d", len(got), st.count)
	}
	sameRecords(t, got[:keep], fx.recs[:keep])
	if next != nil {
		sameRecords(t, got[len(got)-1:], []rec{*next})
	}
}

// recoverOnDisk runs the real recovery: a writer adopts the open segment, appends, seals.
func recoverOnDisk(t *testing.T, fx openFixture, tail []byte) {
	keep := fx.counts[len(fx.counts)-1]
	dir, _ := cutDir(t, fx.name, append(bytes.Clone(fx.data), tail...))
	s := openSpool(t, dir, Options{Now: newClock().Now})
	w, err := s.NewWriter(testRelay)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("NewWriter: %v, want ErrCorrupt", err)
		}
		return
	}
	rc := w.Recovered()
	if rc.Frames < int64(keep) {
		t.Fatalf("recovered %d frames, want at least the %d of the valid chunks", rc.Frames, keep)
	}
	next := rec{Seq: w.LastSeq() + 1, Frame: []byte("new")}
	appendAll(t, w, []rec{next})
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got := readSpool(t, dir)
	if len(got) != int(rc.Frames)+1 {
		t.Fatalf("read %d records, want %d recovered and 1 new", len(got), rc.Frames)
	}
	sameRecords(t, got[:keep], fx.recs[:keep])
	sameRecords(t, got[len(got)-1:], []rec{next})
}

// TestRecoverSeeds runs the committed FuzzRecover corpus through both checks.
func TestRecoverSeeds(t *testing.T) {
	fx := fuzzPrefix(t)
	dec, err := newDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	paths, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzRecover", "*"))
	if len(paths) == 0 {
		t.Fatal("no FuzzRecover seeds")
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			b := readFile(t, path)
			q, ok := bytes.CutPrefix(b, []byte("go test fuzz v1\n[]byte("))
			q, ok2 := bytes.CutSuffix(q, []byte(")\n"))
			tail, err := strconv.Unquote(string(q))
			if !ok || !ok2 || err != nil {
				t.Fatalf("seed %s: unexpected format (%v)", path, err)
			}
			recoverInMemory(t, fx, []byte(tail), dec, enc)
			recoverOnDisk(t, fx, []byte(tail))
		})
	}
}

// fuzzSeeds returns the committed seed corpus, by target.
func fuzzSeeds(t *testing.T) map[string][][]byte {
	golden := readFile(t, goldenFrozen)
	fx := fuzzPrefix(t)

	// Tails that continue the prefix validly: one more chunk, and the trailer and footer of a seal.
	dir, path := cutDir(t, fx.name, fx.data)
	s := openSpool(t, dir, Options{Now: newClock().Now}) // the prefix's clock: no roll by age
	w := newWriter(t, s)
	appendAll(t, w, []rec{{Seq: w.LastSeq() + 1, Frame: []byte("one more chunk")}})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	chunk := readFile(t, path)[len(fx.data):]
	w.abandon()
	dir, _ = cutDir(t, fx.name, fx.data)
	s = openSpool(t, dir, Options{})
	w = newWriter(t, s)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seal := readFile(t, filepath.Join(dir, segmentsDir, segmentName(fx.recs[0].Seq)+sealedExt))[len(fx.data):]

	flipped := bytes.Clone(golden)
	flipped[len(flipped)/2] ^= 1
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	return map[string][][]byte{
		"FuzzReader": {
			golden,
			golden[:len(golden)/2],
			flipped,
			fx.data,
			cat(fx.data, chunk[:20]),
			{},
			[]byte(headerMagic),
		},
		"FuzzRecover": {
			{},
			make([]byte, 64),
			chunk,
			chunk[:chunkHeaderSize/2],
			chunk[:len(chunk)-1],
			cat(chunk, []byte("garbage")),
			cat([]byte("garbage"), chunk),
			seal,
			seal[:len(seal)-3],
		},
	}
}

// TestFuzzSeeds checks that the committed seed corpus matches what the format produces today;
// -update rewrites it.
func TestFuzzSeeds(t *testing.T) {
	for target, seeds := range fuzzSeeds(t) {
		for i, seed := range seeds {
			path := filepath.Join("testdata", "fuzz", target, "seed"+strconv.Itoa(i))
			want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", seed)
			if *update {
				writeFile(t, path, want)
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("seed %s is missing or stale (%v); run go test -run TestFuzzSeeds -update", path, err)
			}
		}
	}
}
