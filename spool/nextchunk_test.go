package spool

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"unsafe"
)

// NextChunk hands over each chunk's buffer: the records of every chunk, kept together, are the
// segment's, none overwritten by a later chunk; a buffer given back is decompressed into again;
// it refuses to start within a chunk that Next began; corruption is reported as Next reports it.
func TestNextChunk(t *testing.T) {
	t.Parallel()
	path, want := sealedSegment(t)

	readAll := func(recycle bool) (got []Record, chunks int, reused int) {
		t.Helper()
		r, err := OpenSegment(path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var recs []Record
		var back []byte
		for {
			var raw []byte
			recs, raw, err = r.NextChunk(recs, back)
			if err == io.EOF {
				return got, chunks, reused
			}
			if err != nil {
				t.Fatalf("NextChunk after %d chunks: %v", chunks, err)
			}
			chunks++
			if len(recs) == 0 {
				t.Fatalf("chunk %d has no records", chunks)
			}
			for _, rec := range recs {
				if len(rec.Frame) > 0 && !within(rec.Frame, raw) {
					t.Fatalf("chunk %d: a frame is not in the buffer handed over", chunks)
				}
			}
			if recycle && back != nil && len(raw) > 0 && cap(back) >= len(raw) {
				if &raw[:1][0] != &back[:1][0] {
					t.Fatalf("chunk %d: a buffer large enough was not used", chunks)
				}
				reused++
			}
			if recycle {
				// The frames are copied out and a buffer of the same size, the caller's,
				// goes back in.
				got = append(got, cloneFrames(recs)...)
				back = bytes.Clone(raw)
			} else {
				got = append(got, recs...) // the frames stay in the chunks' buffers
			}
		}
	}
	toRecs := func(rs []Record) []rec {
		out := make([]rec, len(rs))
		for i, r := range rs {
			out[i] = rec{r.Seq, r.Time, r.Frame}
		}
		return out
	}

	got, chunks, _ := readAll(false)
	if chunks < 4 {
		t.Fatalf("%d chunks, want several", chunks)
	}
	sameRecords(t, toRecs(got), want)

	got, _, reused := readAll(true)
	sameRecords(t, toRecs(got), want)
	if reused == 0 {
		t.Error("no buffer given back was used again")
	}

	t.Run("within a chunk", func(t *testing.T) {
		r, err := OpenSegment(path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.NextChunk(nil, nil); !errors.Is(err, errMidChunk) {
			t.Fatalf("NextChunk within a chunk: %v", err)
		}
	})

	t.Run("corrupt", func(t *testing.T) {
		orig, offs, _, path := sealedFixture(t)
		b := bytes.Clone(orig)
		ch, _ := parseChunkHeader(b[offs[2]:])
		payload := b[offs[2]+chunkHeaderSize : offs[2]+chunkHeaderSize+int64(ch.stored)]
		for i := range payload[:len(payload)/2] {
			payload[i] ^= 0x5a
		}
		ch.crc = crc32c(payload)
		ch.put(b[offs[2]:])
		writeFile(t, path, b)
		r, err := OpenSegment(path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for err == nil {
			_, _, err = r.NextChunk(nil, nil)
		}
		wantCorrupt(t, err, path, offs[2])
		if _, _, again := r.NextChunk(nil, nil); again != err {
			t.Errorf("NextChunk after the error: %v, want %v", again, err)
		}
	})
}

// within reports whether b lies inside buf's memory.
func within(b, buf []byte) bool {
	if len(buf) == 0 {
		return false
	}
	start, end := &buf[:1][0], &buf[len(buf)-1:][0]
	first, last := &b[:1][0], &b[len(b)-1:][0]
	return uintptrOf(first) >= uintptrOf(start) && uintptrOf(last) <= uintptrOf(end)
}

func cloneFrames(rs []Record) []Record {
	out := make([]Record, len(rs))
	for i, r := range rs {
		out[i] = Record{r.Seq, r.Time, bytes.Clone(r.Frame)}
	}
	return out
}

func uintptrOf(p *byte) uintptr { return uintptr(unsafe.Pointer(p)) }
