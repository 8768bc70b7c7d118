package loader

import (
	"encoding/binary"
	"io"
	"math"
	"time"
)

// The binary COPY format, written by hand for the few column types the loader writes (text and
// varchar, jsonb, timestamp, integers): pgx's generic CopyFrom encodes each value through its
// type map, which cost more CPU than the rest of the writer, and it builds its own COPY
// statement, which cannot carry the savepoint statements a direct COPY needs in the same round
// trip. Target tables are written this way only when their columns have exactly these types
// (schema.go).

// copyHeader starts a binary COPY stream: signature, flags, header extension length.
var copyHeader = []byte("PGCOPY\n\377\r\n\000\000\000\000\000\000\000\000\000")

// microsecFromUnixEpochToY2K is where PostgreSQL's timestamps count from.
const microsecFromUnixEpochToY2K = 946684800 * 1000000

// copyRow appends one row's fields in the binary COPY format.
type copyRow struct{ b []byte }

// start begins a row of n fields.
func (r *copyRow) start(n int) { r.b = binary.BigEndian.AppendUint16(r.b, uint16(n)) }

func (r *copyRow) null() { r.b = binary.BigEndian.AppendUint32(r.b, math.MaxUint32) }

// text appends a text or varchar value.
func (r *copyRow) text(s string) {
	r.b = binary.BigEndian.AppendUint32(r.b, uint32(len(s)))
	r.b = append(r.b, s...)
}

// textOrNull appends s, or NULL when it is empty.
func (r *copyRow) textOrNull(s string) {
	if s == "" {
		r.null()
		return
	}
	r.text(s)
}

// textPtr appends *s, or NULL when s is nil.
func (r *copyRow) textPtr(s *string) {
	if s == nil {
		r.null()
		return
	}
	r.text(*s)
}

// jsonb appends a JSON document, or NULL when b is nil.
func (r *copyRow) jsonb(b []byte) {
	if b == nil {
		r.null()
		return
	}
	r.b = binary.BigEndian.AppendUint32(r.b, uint32(len(b)+1))
	r.b = append(r.b, 1) // jsonb's binary format version
	r.b = append(r.b, b...)
}

// timestamp appends t's wall clock as a timestamp without time zone, as pgx does.
func (r *copyRow) timestamp(t time.Time) {
	if t.Location() != time.UTC {
		t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
	}
	us := t.Unix()*1000000 + int64(t.Nanosecond())/1000 - microsecFromUnixEpochToY2K
	r.b = binary.BigEndian.AppendUint32(r.b, 8)
	r.b = binary.BigEndian.AppendUint64(r.b, uint64(us))
}

func (r *copyRow) int4(v int32) {
	r.b = binary.BigEndian.AppendUint32(r.b, 4)
	r.b = binary.BigEndian.AppendUint32(r.b, uint32(v))
}

func (r *copyRow) int8(v int64) {
	r.b = binary.BigEndian.AppendUint32(r.b, 8)
	r.b = binary.BigEndian.AppendUint64(r.b, uint64(v))
}

// copySource streams n rows as a binary COPY, encoding them as the connection reads.
type copySource struct {
	n, i int
	row  func(i int, r *copyRow)
	buf  copyRow
	off  int // bytes of buf already read
	done bool
}

// copyChunk is how many bytes copySource encodes ahead of the reader.
const copyChunk = 64 << 10

func newCopySource(n int, row func(i int, r *copyRow)) *copySource {
	s := &copySource{n: n, row: row}
	s.buf.b = append(make([]byte, 0, copyChunk+1024), copyHeader...)
	return s
}

// Read implements io.Reader. It fills p unless the rows run out, carrying what an encoded chunk
// has left past p into the next Read: each Read is one CopyData message and one write, and a
// short one would cost a message and a write of its own.
func (s *copySource) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if s.off == len(s.buf.b) {
			if s.done {
				break
			}
			s.buf.b, s.off = s.buf.b[:0], 0
			for s.i < s.n && len(s.buf.b) < copyChunk {
				s.row(s.i, &s.buf)
				s.i++
			}
			if s.i == s.n {
				s.buf.b = binary.BigEndian.AppendUint16(s.buf.b, math.MaxUint16) // trailer: -1
				s.done = true
			}
		}
		c := copy(p[n:], s.buf.b[s.off:])
		s.off += c
		n += c
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}
