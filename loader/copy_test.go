package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

// TestCopySourceFillsReads checks that every Read of a copySource but the last fills the buffer
// it is given (each Read is one CopyData message and one write), and that the stream is the
// header, every row in order and the trailer, whatever the buffer's size.
func TestCopySourceFillsReads(t *testing.T) {
	// Rows of 7 to 1,806 bytes: chunks end mid-row at every kind of offset.
	rowOf := func(i int, r *copyRow) {
		r.start(2)
		r.int4(int32(i))
		r.text(strings.Repeat(string(rune('a'+i%26)), (i*37)%1800))
	}
	for _, n := range []int{0, 1, 3, 500, 4000} {
		want := append([]byte(nil), copyHeader...)
		r := copyRow{b: want}
		for i := range n {
			rowOf(i, &r)
		}
		want = binary.BigEndian.AppendUint16(r.b, math.MaxUint16)

		// copyChunk-5 (65,531 bytes) is what pgconn's CopyFrom reads into, copyChunk what
		// multiCopy does.
		for _, size := range []int{1, 7, 1000, copyChunk - 5, copyChunk, 3 * copyChunk} {
			src := newCopySource(n, rowOf)
			p := make([]byte, size)
			var got []byte
			reads := 0
			for {
				k, err := src.Read(p)
				if k > 0 {
					reads++
					got = append(got, p[:k]...)
				}
				if errors.Is(err, io.EOF) {
					if k != 0 {
						t.Fatalf("n=%d size=%d: Read returned %d bytes with io.EOF", n, size, k)
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if k < size && len(got) != len(want) {
					t.Fatalf("n=%d size=%d: Read %d returned %d bytes before the end of the stream (%d of %d)", n, size, reads, k, len(got), len(want))
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("n=%d size=%d: stream of %d bytes differs from the %d expected", n, size, len(got), len(want))
			}
			if full := (len(want) + size - 1) / size; reads != full {
				t.Errorf("n=%d size=%d: %d reads for %d bytes, want %d", n, size, reads, len(want), full)
			}
		}
	}
}
