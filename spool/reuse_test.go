package spool

import (
	"bytes"
	"io"
	"testing"
)

// OpenSegment readers hand their decoder and buffers to the next one when closed: a reader
// closed halfway, one closed after corrupt data, and two open at once must each leave the
// others reading exactly the segment's records.
func TestReaderStateReuse(t *testing.T) {
	path, recs := sealedSegment(t)
	sameRecords(t, readSegment(t, path), recs)

	next := func(r *Reader) rec {
		t.Helper()
		got, err := r.Next()
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		return rec{got.Seq, got.Time, bytes.Clone(got.Frame)}
	}

	t.Run("closed halfway", func(t *testing.T) {
		for range 3 {
			r, err := OpenSegment(path)
			if err != nil {
				t.Fatal(err)
			}
			for range len(recs) / 2 {
				next(r)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			sameRecords(t, readSegment(t, path), recs)
		}
	})

	t.Run("closed after corrupt data", func(t *testing.T) {
		orig, chunks, _, path := sealedFixture(t)
		second := chunks[1]
		// The second chunk's payload is corrupted and its checksum fixed, so that the
		// decoder, not the checksum, meets the damage.
		b := bytes.Clone(orig)
		ch, _ := parseChunkHeader(b[second:])
		payload := b[second+chunkHeaderSize : second+chunkHeaderSize+int64(ch.stored)]
		for i := range payload[:len(payload)/2] {
			payload[i] ^= 0x5a
		}
		ch.crc = crc32c(payload)
		ch.put(b[second:])
		writeFile(t, path, b)
		r, err := OpenSegment(path)
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err = r.Next(); err != nil {
				break
			}
		}
		if err == io.EOF {
			t.Fatal("a segment with a corrupt chunk read to the end")
		}
		wantCorrupt(t, err, path, second)
		r.Close()
		writeFile(t, path, orig)
		sameRecords(t, readSegment(t, path), recs)
	})

	t.Run("two at once", func(t *testing.T) {
		a, err := OpenSegment(path)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		b, err := OpenSegment(path)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		var gotA, gotB []rec
		for range recs {
			gotA = append(gotA, next(a))
			gotB = append(gotB, next(b))
		}
		sameRecords(t, gotA, recs)
		sameRecords(t, gotB, recs)
		for _, r := range []*Reader{a, b} {
			if _, err := r.Next(); err != io.EOF {
				t.Errorf("after the last record: %v, want io.EOF", err)
			}
		}
	})
}
