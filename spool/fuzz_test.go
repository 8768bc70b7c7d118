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
			var recs []Record
			var end error
			for {
				rec, err := r.Next()
				if err == io.EOF {
					if n != r.Info().Count {
						t.Errorf("read %d records, trailer says %d", n, r.Info().Count)
					}
					end = err
					break
				}
				if err != nil {
					if !errors.Is(err, ErrCorrupt) {
						t.Errorf("Next: %v, want ErrCorrupt", err)
					}
					end = err
					break
				}
				if rec.Seq <= prev {
					t.Errorf("seq %d after %d", rec.Seq, prev)
				}
				prev = rec.Seq
				n++
				recs = append(recs, Record{rec.Seq, rec.Time, bytes.Clone(rec.Frame)})
			}
			// NextChunk reads the same records and ends the same way.
			r, err := newReader(bytes.NewReader(data), size, "fuzz.seg", dec)
			if err != nil {
				t.Fatalf("second newReader: %v", err)
			}
			var got, chunk []Record
			for {
				chunk, _, err = r.NextChunk(chunk, nil)
				if err != nil {
					break
				}
				got = append(got, chunk...)
			}
			if err == nil || end == nil || err.Error() != end.Error() {
				t.Errorf("NextChunk ends with %v, Next with %v", err, end)
			}
			if len(got) != len(recs) {
				t.Fatalf("NextChunk read %d records, Next %d", len(got), len(recs))
			}
			for i := range got {
				if got[i].Seq != recs[i].Seq || !got[i].Time.Equal(recs[i].Time) || !bytes.Equal(got[i].Frame, recs[i].Frame) {
					t.Fatalf("record %d: NextChunk seq %d, Next seq %d", i, got[i].Seq, recs[i].Seq)
				}
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

// FuzzChunkPayload puts arbitrary bytes, with matching checksums, in place of the payload of
// the golden segment's second data chunk, so that the zstd decoder itself meets hostile input in
// the middle of a stream: the sealed reader and the open-segment scan must return the records
// or an error wrapping ErrCorrupt, and never panic. The decoder's window is capped, so no input
// makes it allocate more than maxWindow for its history.
func FuzzChunkPayload(f *testing.F) {
	golden := readFile(f, goldenFrozen)
	orig := chunkPayload(f, golden, 1)
	dec, err := newDecoder()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		seg, bodyEnd := withPayload(t, golden, 1, payload)
		r, err := newReader(bytes.NewReader(seg), int64(len(seg)), "fuzz.seg", dec)
		if err != nil {
			t.Fatalf("newReader: %v", err) // the framing is valid by construction
		}
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrCorrupt) || bytes.Equal(payload, orig) {
					t.Errorf("Next: %v, want ErrCorrupt (and no error with the original payload)", err)
				}
				break
			}
		}
		open := seg[:bodyEnd]
		if _, err := scanOpen(bytes.NewReader(open), int64(len(open)), "fuzz.open", dec); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Errorf("scanOpen: %v, want ErrCorrupt", err)
		}
	})
}

// withPayload returns the sealed segment seg with the payload of its data chunk number n
// replaced (checksums, lengths and the trailer fixed up), and where its end chunk starts.
func withPayload(t testing.TB, seg []byte, n int, payload []byte) (out []byte, endOff int) {
	h, err := readHeader(bytes.NewReader(seg), int64(len(seg)), "")
	if err != nil {
		t.Fatal(err)
	}
	trOff := len(seg) - trailerChunkSize - footerSize
	out = append(out, seg[:h.size()]...)
	for off, i := int(h.size()), 0; off < trOff; i++ {
		ch, _ := parseChunkHeader(seg[off:])
		next := off + chunkHeaderSize + int(ch.stored)
		if ch.kind == kindEnd {
			endOff = len(out)
		}
		if i != n || len(payload) == 0 {
			out = append(out, seg[off:next]...)
			off = next
			continue
		}
		ch.stored, ch.crc = uint32(len(payload)), crc32c(payload)
		start := len(out)
		out = append(out, make([]byte, chunkHeaderSize)...)
		ch.put(out[start:])
		out = append(out, payload...)
		off = next
	}
	st, _ := parseTrailerPayload(seg[trOff+chunkHeaderSize:])
	st.bodyCRC = crc32Update(0, out[h.size():])
	return appendSealing(out, st, int64(len(out))), endOff
}

// fuzzPrefix is the open segment FuzzRecover appends arbitrary bytes to: three chunks of four
// small records, made with a fixed clock so the bytes never change. next is the fourth chunk
// its writer cut, which continues the prefix's zstd stream.
func fuzzPrefix(t testing.TB) (fx openFixture, next []byte) {
	all := makeOpenFixture(t, makeRecords(rand.New(rand.NewPCG(5, 5)), 7, 16, 300, newClock().Now()), 4)
	if len(all.bounds) != 5 {
		t.Fatalf("fuzz fixture has %d chunks, want 4", len(all.bounds)-1)
	}
	fx = openFixture{
		name:   all.name,
		data:   all.data[:all.bounds[3]],
		bounds: all.bounds[:4],
		counts: all.counts[:4],
		recs:   all.recs[:all.counts[3]],
	}
	return fx, all.data[all.bounds[3]:all.bounds[4]]
}

// FuzzRecover appends arbitrary bytes to an open segment of valid chunks and runs the recovery
// scan on it: it must fail with ErrCorrupt, or keep every valid record and end where the
// segment can be sealed. The check then seals it in memory as the writer does on disk and reads
// the result back as a sealed segment. TestRecoverSeeds runs the seeds through the real
// NewWriter path; TestTornTail covers it at every chunk boundary.
func FuzzRecover(f *testing.F) {
	fx, _ := fuzzPrefix(f)
	dec, err := newDecoder()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tail []byte) {
		recoverInMemory(t, fx, tail, dec)
	})
}

func recoverInMemory(t *testing.T, fx openFixture, tail []byte, dec *zstd.Decoder) {
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
	if !sc.sealed {
		seg = appendSeal(data[:sc.validEnd:sc.validEnd], &st, sc.ended, sc.validEnd)
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
}

// recoverOnDisk runs the real recovery: a writer seals the open segment, then appends to a new one.
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
	fx, _ := fuzzPrefix(t)
	dec, err := newDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
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
			recoverInMemory(t, fx, []byte(tail), dec)
			recoverOnDisk(t, fx, []byte(tail))
		})
	}
}

// fuzzSeeds returns the committed seed corpus, by target.
func fuzzSeeds(t *testing.T) map[string][][]byte {
	golden := readFile(t, goldenFrozen)
	// Tails that continue the prefix validly: one more chunk of its stream, and what recovery
	// writes to seal it (the end chunk, the trailer and the footer).
	fx, chunk := fuzzPrefix(t)
	dir, _ := cutDir(t, fx.name, fx.data)
	s := openSpool(t, dir, Options{})
	w := newWriter(t, s)
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
		"FuzzChunkPayload": {
			chunkPayload(t, golden, 1),
			chunkPayload(t, golden, 2),
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

// chunkPayload returns the payload of chunk number n of the segment seg.
func chunkPayload(t testing.TB, seg []byte, n int) []byte {
	h, err := readHeader(bytes.NewReader(seg), int64(len(seg)), "")
	if err != nil {
		t.Fatal(err)
	}
	off := int(h.size())
	for range n {
		ch, _ := parseChunkHeader(seg[off:])
		off += chunkHeaderSize + int(ch.stored)
	}
	ch, _ := parseChunkHeader(seg[off:])
	return seg[off+chunkHeaderSize : off+chunkHeaderSize+int(ch.stored)]
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
