package decode

import (
	"errors"
	"math"
)

// CBOR major types.
const (
	majUint  = 0
	majNeg   = 1
	majBytes = 2
	majText  = 3
	majArray = 4
	majMap   = 5
	majTag   = 6
	majOther = 7
)

// cborNull is the encoding of the simple value null.
const cborNull = 0xf6

// Errors of the CBOR reader. DAG-CBOR has only definite lengths, so an indefinite length is
// malformed input, like a truncated one.
var (
	errTruncated  = errors.New("decode: truncated CBOR")
	errIndefinite = errors.New("decode: indefinite-length CBOR item")
	errReserved   = errors.New("decode: reserved CBOR additional info")
	errNotMap     = errors.New("decode: CBOR item is not a map")
	errNotText    = errors.New("decode: CBOR item is not a text string")
	errNotInt     = errors.New("decode: CBOR item is not an integer")
	errIntRange   = errors.New("decode: CBOR integer out of int64 range")
	errTrailing   = errors.New("decode: trailing bytes after CBOR item")
)

// cborReader reads DAG-CBOR items from b starting at off. Every length is checked against the
// bytes left, so no input can make it read out of bounds, loop without consuming input, or
// make a caller allocate more than the input's size.
type cborReader struct {
	b   []byte
	off int
}

// left returns the number of unread bytes.
func (r *cborReader) left() int { return len(r.b) - r.off }

// head reads an item's initial byte and argument: the value for integers and simple values,
// the length for strings, arrays and maps, the number for tags.
func (r *cborReader) head() (maj byte, arg uint64, err error) {
	if r.off >= len(r.b) {
		return 0, 0, errTruncated
	}
	ib := r.b[r.off]
	r.off++
	maj = ib >> 5
	ai := ib & 0x1f
	var n int
	switch {
	case ai < 24:
		return maj, uint64(ai), nil
	case ai == 24:
		n = 1
	case ai == 25:
		n = 2
	case ai == 26:
		n = 4
	case ai == 27:
		n = 8
	case ai == 31:
		return 0, 0, errIndefinite
	default:
		return 0, 0, errReserved
	}
	if r.left() < n {
		return 0, 0, errTruncated
	}
	for _, c := range r.b[r.off : r.off+n] {
		arg = arg<<8 | uint64(c)
	}
	r.off += n
	return maj, arg, nil
}

// skip reads past one whole item, nested items included, without decoding it. It is iterative
// (a count of items still to skip), so deep nesting cannot exhaust the stack.
func (r *cborReader) skip() error {
	for pending := uint64(1); pending > 0; pending-- {
		maj, arg, err := r.head()
		if err != nil {
			return err
		}
		switch maj {
		case majBytes, majText:
			if arg > uint64(r.left()) {
				return errTruncated
			}
			r.off += int(arg)
		case majArray:
			// Every element takes at least one byte.
			if arg > uint64(r.left()) {
				return errTruncated
			}
			pending += arg
		case majMap:
			if arg > uint64(r.left())/2 {
				return errTruncated
			}
			pending += 2 * arg
		case majTag:
			pending++
		}
	}
	return nil
}

// mapLen reads a map header and returns its number of entries.
func (r *cborReader) mapLen() (int, error) {
	maj, n, err := r.head()
	if err != nil {
		return 0, err
	}
	if maj != majMap {
		return 0, errNotMap
	}
	if n > uint64(r.left())/2 {
		return 0, errTruncated
	}
	return int(n), nil
}

// text reads a text string and returns it as a slice of the input.
func (r *cborReader) text() ([]byte, error) {
	maj, n, err := r.head()
	if err != nil {
		return nil, err
	}
	if maj != majText {
		return nil, errNotText
	}
	return r.bytes(n)
}

// bytes returns the next n bytes, the contents of a string whose head has been read.
func (r *cborReader) bytes(n uint64) ([]byte, error) {
	if n > uint64(r.left()) {
		return nil, errTruncated
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s, nil
}

// textOrNull reads a text string or null; null gives ok false.
func (r *cborReader) textOrNull() (s []byte, ok bool, err error) {
	if r.peekNull() {
		return nil, false, nil
	}
	s, err = r.text()
	return s, err == nil, err
}

// peekNull consumes a null and reports whether there was one.
func (r *cborReader) peekNull() bool {
	if r.off < len(r.b) && r.b[r.off] == cborNull {
		r.off++
		return true
	}
	return false
}

// int reads an integer that fits in an int64.
func (r *cborReader) int() (int64, error) {
	maj, arg, err := r.head()
	if err != nil {
		return 0, err
	}
	return intValue(maj, arg)
}

// intValue is the int64 of an integer head.
func intValue(maj byte, arg uint64) (int64, error) {
	if arg > math.MaxInt64 {
		return 0, errIntRange
	}
	switch maj {
	case majUint:
		return int64(arg), nil
	case majNeg:
		return -1 - int64(arg), nil
	}
	return 0, errNotInt
}

// checkMapItem reports whether b is exactly one well-formed CBOR map. Decode runs it before
// handing bytes to cbor-gen, whose readers allocate a string or byte slice of the length an
// item claims before reading it: after this check no claim exceeds the input.
func checkMapItem(b []byte) error {
	if len(b) == 0 {
		return errTruncated
	}
	if b[0]>>5 != majMap {
		return errNotMap
	}
	r := cborReader{b: b}
	if err := r.skip(); err != nil {
		return err
	}
	if r.off != len(b) {
		return errTrailing
	}
	return nil
}
