package loader

import (
	"errors"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/backfill/backfill/deletes"
	"github.com/backfill/backfill/spool"
)

// Left-out creates: a create whose record a later event deletes is not written at all.
//
// Sequential application inserts such a row (or finds its uri taken and does nothing) and a
// later delete removes it; in between, the row at that uri matters to nothing but creates of
// the same uri, which the same delete dooms too, and, in a pair table, creates of the same pair
// (pending.go). So when the planner knows that a delete of uri u that the load will apply comes
// after the unit, it leaves out the unit's last create at u: the database after that delete is
// the same, and until then it differs only in that row. An update counts as a delete here: the
// loader applies it as a delete, then a create. Profiles go the same way: a delete or update of
// a profile sets every profile column of its users row (an update whose record does not decode
// clears them), so the unit's last profile of a DID whose profile a later event deletes or
// updates is left out, and until then the row differs only in those columns. The knowledge
// comes from the spool's delete index (package deletes): per segment, the keys of the uris that
// its #commit events delete or update, with the seq and time of each, written by the fetch
// (sidecars of earlier versions list no profiles: fewer hints). An entry is a delete the load
// will apply whenever the create at its uri was applied (same DID, collection and uri, so the
// same filters), provided that it is not below the relay's mark when it comes (the spool's seqs
// rise, and a segment whose frames could lift the mark above their own seq is a barrier the
// window does not cross), and that its time is in the load's window (checked here). A missing
// or unreadable index is a barrier too: hints are an optimisation, and no hint is taken beyond
// a segment that was not indexed.
//
// The database differs from sequential application up to the unit's seq only by rows whose
// deletes come later in the spool, so a load that stops there and resumes from the same spool
// ends exactly where a load without hints would; the cursor row says which events are applied,
// and backfill_loader.awaits_seq which later events the database still needs (awaits.go).

// hintBudget bounds the delete index entries the window holds (about 40 bytes each).
const hintBudget = 1 << 19

// hintWindow holds the last seq of the deletes of the segments ahead of the planner, by key of
// the deleted uri. The lister feeds it the segments it queues (add); the planner asks it
// (doomed) after advancing it past each unit (advance). One advance at a time reads the index
// files, on a goroutine of the planner's that runs while the unit is read (the first advance of
// a run reads the whole window: the database started 60 ms sooner); add may run on another.
type hintWindow struct {
	since, until time.Time
	log          *slog.Logger

	mu   sync.Mutex
	segs []spool.SegmentInfo // queued segments not yet in the window, ascending

	last    map[[16]byte]int64 // key -> the highest seq of a delete of it in the window
	through int64              // the window holds the deletes of segments up to this seq
	barrier bool               // the segment after the window is a barrier (read again once the queue moves)
	held    int                // entries taken since the last prune
}

func newHintWindow(cfg Config) *hintWindow {
	return &hintWindow{since: cfg.Since, until: cfg.Until, log: cfg.Logger, last: map[[16]byte]int64{}}
}

// add queues segments (ascending, after those queued before) for the window.
func (h *hintWindow) add(segs []spool.SegmentInfo) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.segs = append(h.segs, segs...)
	h.mu.Unlock()
}

// advance moves the window to the unit whose last seq is pos: the segments ending at or
// before it leave the queue (their deletes are no longer ahead), and the window takes the
// index of the segments after it until it holds hintBudget entries or meets a barrier.
func (h *hintWindow) advance(pos int64) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.segs) > 0 && h.segs[0].LastSeq <= pos {
		if h.segs[0].LastSeq > h.through {
			// Never indexed (a barrier, or beyond the budget): what lies after it was not
			// taken either, so the window starts again from here.
			h.through = h.segs[0].LastSeq
		}
		h.segs = h.segs[1:]
		h.barrier = false
	}
	if h.held > hintBudget/2 {
		for k, seq := range h.last {
			if seq <= pos {
				delete(h.last, k)
			}
		}
		h.held = len(h.last)
	}
	for _, s := range h.segs {
		if s.LastSeq <= h.through {
			continue
		}
		if h.barrier || h.held >= hintBudget {
			return
		}
		idx, err := deletes.Read(s)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Not written (yet: a fetch writes it just after it seals the segment, which a
			// following load may list first): the window stops here, and looks again next time.
			return
		case err != nil:
			h.log.Warn("delete index unreadable: rows its deletes remove are written first", "segment", s.Name, "err", err)
			h.barrier = true
			return
		case len(idx.Barriers) > 0:
			h.barrier = true
			return
		}
		if len(h.last) == 0 {
			// An empty window takes its first index: sized for as many entries from each
			// queued segment, up to the budget, the map does not grow by rehashing (a seventh
			// of the loader's CPU before its first unit).
			h.last = make(map[[16]byte]int64, min(hintBudget, len(idx.Entries)*len(h.segs)))
		}
		for _, e := range idx.Entries {
			// The event's time is in [t, t+1µs): only an entry the window surely holds counts.
			t := time.UnixMicro(e.Time)
			if (!h.since.IsZero() && t.Before(h.since)) || (!h.until.IsZero() && t.Add(time.Microsecond).After(h.until)) {
				continue // the load may not apply it
			}
			if e.Seq > h.last[e.Key] {
				h.last[e.Key] = e.Seq
			}
			h.held++
		}
		h.through = s.LastSeq
	}
}

// deletedAfter returns the seq of the last delete of uri in the window when it comes after seq
// end, and 0 when none does.
func (h *hintWindow) deletedAfter(uri string, end int64) int64 {
	if h == nil || len(h.last) == 0 {
		return 0
	}
	if seq := h.last[deletes.Key(uri)]; seq > end {
		return seq
	}
	return 0
}
