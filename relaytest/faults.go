package relaytest

import (
	"net/http"
	"sync"
)

// FaultKind names a misbehaviour the relay injects into one connection's stream.
type FaultKind int

// Stream faults. Each fires once, when the connection has sent Fault.After log frames.
const (
	FaultNone         FaultKind = iota
	FaultDrop                   // close the TCP connection without a close frame
	FaultHalfFrame              // send the first half of the next frame, then close the TCP connection
	FaultStall                  // stop sending, keep the connection open (until the client or Close ends it)
	FaultTooSlow                // send the error frame ConsumerTooSlow and a close frame, then close
	FaultRepeat                 // send the last frame sent again (its seq repeats), then go on
	FaultBackwards              // send an earlier frame (a lower seq; needs After >= 2), then go on
	FaultUnknownFrame           // send a frame with an unknown op and one with an unknown t, then go on
)

// String returns the fault's name.
func (k FaultKind) String() string {
	switch k {
	case FaultNone:
		return "none"
	case FaultDrop:
		return "drop"
	case FaultHalfFrame:
		return "half-frame"
	case FaultStall:
		return "stall"
	case FaultTooSlow:
		return "too-slow"
	case FaultRepeat:
		return "repeat"
	case FaultBackwards:
		return "backwards"
	case FaultUnknownFrame:
		return "unknown-frame"
	}
	return "invalid"
}

// Fault is one stream fault: Kind fires after After frames of the log have been sent on the
// connection (replayed or live; the OutdatedCursor #info does not count).
type Fault struct {
	Kind  FaultKind
	After int
}

// Faults holds the faults waiting for the next connections; it is safe for concurrent use.
// Stream faults queue up: each upgraded connection takes the first one waiting. Rejections
// apply to upgrade requests before any stream fault is taken.
type Faults struct {
	mu      sync.Mutex
	stream  []Fault
	rejects []int
}

// Add queues f for the next upgraded connection that has none.
func (f *Faults) Add(ft Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stream = append(f.stream, ft)
}

// Reject answers the next n subscription requests with status instead of upgrading them;
// 429 (http.StatusTooManyRequests) carries Retry-After: 1.
func (f *Faults) Reject(status, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.rejects = append(f.rejects, status)
	}
}

// Clear drops every fault still waiting.
func (f *Faults) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stream, f.rejects = nil, nil
}

// Pending returns how many stream faults and rejections are still waiting.
func (f *Faults) Pending() (stream, rejects int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.stream), len(f.rejects)
}

// takeReject returns the status to refuse this request with, or 0.
func (f *Faults) takeReject() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.rejects) == 0 {
		return 0
	}
	s := f.rejects[0]
	f.rejects = f.rejects[1:]
	return s
}

// takeStream returns the next stream fault, or one of Kind FaultNone.
func (f *Faults) takeStream() Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.stream) == 0 {
		return Fault{}
	}
	ft := f.stream[0]
	f.stream = f.stream[1:]
	return ft
}

// putBack returns a fault taken by a connection that never started to the front of the queue.
func (f *Faults) putBack(ft Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stream = append([]Fault{ft}, f.stream...)
}

// reject writes the refusal for status.
func reject(w http.ResponseWriter, status int) {
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	http.Error(w, http.StatusText(status), status)
}
