// Package freelist keeps values for reuse, up to a fixed number. Unlike a sync.Pool it keeps
// them across garbage collections, which suits buffers and decoders that a long run takes and
// gives back at a steady pace: a pool emptied at every collection made them all anew.
package freelist

// List holds up to its size of values; it is safe for concurrent use.
type List[T any] struct{ c chan T }

// New returns a list that keeps at most n values.
func New[T any](n int) *List[T] { return &List[T]{c: make(chan T, n)} }

// Get takes a kept value; ok is false (and v the zero value) when the list is empty.
func (l *List[T]) Get() (v T, ok bool) {
	select {
	case v = <-l.c:
		return v, true
	default:
		return v, false
	}
}

// Put keeps v and reports whether there was room; a value not kept is the caller's to release.
func (l *List[T]) Put(v T) bool {
	select {
	case l.c <- v:
		return true
	default:
		return false
	}
}
