package loader

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backfill/backfill/decode"
)

// Table is a table the loader writes rows into.
type Table uint8

// The tables whose rows the loader counts.
const (
	TableUsers    Table = iota // users
	TablePosts                 // posts
	TableLikes                 // likes
	TableReposts               // reposts
	TableFollows               // follows
	TableBlocks                // blocks
	TableAccounts              // backfill_accounts
	NumTables                  // the number of Table values
)

var tableNames = [NumTables]string{"users", "posts", "likes", "reposts", "follows", "blocks", "backfill_accounts"}

// String returns the table's name in the database.
func (t Table) String() string {
	if t < NumTables {
		return tableNames[t]
	}
	return "unknown"
}

// Reasons the loader adds to decode's when it skips or repairs input.
const (
	ReasonAlreadyLoaded decode.Reason = "already_loaded" // seq at or below the relay's high-water mark
	ReasonOutOfWindow   decode.Reason = "out_of_window"  // event time outside Since/Until
	ReasonTooLong       decode.Reason = "too_long"       // an identifier longer than its column allows
	ReasonNoTime        decode.Reason = "no_time"        // no event time and no earlier event to take it from
	ReasonTimeFallback  decode.Reason = "time_fallback"  // no event time: the previous event's time was used (repaired)
	ReasonTruncated     decode.Reason = "truncated"      // free text cut to its column's limit (repaired)
)

// repairedReasons are outcomes where the input was kept after a fix; every other reason is a skip.
var repairedReasons = map[decode.Reason]bool{
	decode.ReasonCleanedText:  true,
	decode.ReasonBadTime:      true,
	decode.ReasonDroppedField: true,
	ReasonTimeFallback:        true,
	ReasonTruncated:           true,
}

// IsRepair reports whether r names input that was kept after a fix rather than skipped.
func IsRepair(r decode.Reason) bool { return repairedReasons[r] }

// RowCount is what the loader did to one table.
type RowCount struct {
	Inserted int64 `json:"inserted"`
	Updated  int64 `json:"updated,omitempty"`
	Deleted  int64 `json:"deleted,omitempty"`
	// Elided counts creates left out because a later event of the spool deletes their record
	// (hints.go): neither written nor, later, deleted. In users, the profiles left out because a
	// later delete or update of the profile sets them again.
	Elided int64 `json:"elided,omitempty"`
}

func (c RowCount) total() int64 { return c.Inserted + c.Updated + c.Deleted }

func (c *RowCount) add(o RowCount) {
	c.Inserted += o.Inserted
	c.Updated += o.Updated
	c.Deleted += o.Deleted
	c.Elided += o.Elided
}

// numKinds is the number of decode.Kind values.
const numKinds = int(decode.KindError) + 1

// Stats holds counters that other goroutines may read while Run runs; committed figures
// (events, rows, reasons, last seq) move only when a transaction commits.
type Stats struct {
	SegmentsTotal   atomic.Int64            // sealed segments seen in the spool
	SegmentsDone    atomic.Int64            // segments loaded or skipped
	SegmentsSkipped atomic.Int64            // segments skipped as already loaded
	Frames          atomic.Int64            // frames read from segments
	BytesRead       atomic.Int64            // raw frame bytes read from segments
	Events          [numKinds]atomic.Int64  // committed events by decode.Kind
	Rows            [NumTables]atomic.Int64 // committed rows inserted, updated or deleted, by Table
	LastSeq         atomic.Int64            // the highest committed seq
	lastTime        atomic.Int64            // unix nanoseconds of LastSeq's event; 0 when none
	mu              sync.Mutex              // guards reasons
	reasons         map[decode.Reason]int64 // committed skips and repairs by reason
}

// LastEventTime returns the time of the event at LastSeq, zero before the first commit.
func (s *Stats) LastEventTime() time.Time {
	n := s.lastTime.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Reasons returns a copy of the committed skip and repair counts by reason.
func (s *Stats) Reasons() map[decode.Reason]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.reasons)
}

func (s *Stats) addReasons(m map[decode.Reason]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reasons == nil {
		s.reasons = map[decode.Reason]int64{}
	}
	for r, n := range m {
		s.reasons[r] += n
	}
}

// Summary is what one Run did.
type Summary struct {
	SegmentsLoaded  int                     // segments loaded by this run
	SegmentsSkipped int                     // segments skipped as already loaded
	Transactions    int                     // committed transactions
	Retries         int                     // transaction attempts that failed transiently and were retried
	AheadUnits      int                     // transactions that began with a head start (head.go)
	AheadRows       int64                   // rows those head starts wrote
	Frames          int64                   // frames read
	Events          map[decode.Kind]int64   // events applied or counted, by kind
	Rows            map[Table]RowCount      // rows written, by table
	Skipped         map[decode.Reason]int64 // input skipped, by reason
	Repaired        map[decode.Reason]int64 // input kept after a fix, by reason
	LastSeq         int64                   // the highest seq loaded so far (0 when none)
	LastEventTime   time.Time               // that event's time
	Duration        time.Duration           // wall time of the run
	DecodeTime      time.Duration           // time spent reading, decoding and planning (overlaps WriteTime)
	WriteTime       time.Duration           // time spent in database transactions, retries included
	WaitTime        time.Duration           // time the writer waited for decoded input
}

func newSummary() Summary {
	return Summary{
		Events:   map[decode.Kind]int64{},
		Rows:     map[Table]RowCount{},
		Skipped:  map[decode.Reason]int64{},
		Repaired: map[decode.Reason]int64{},
	}
}

// counts are the per-segment outcomes of planning.
type counts struct {
	frames  int64
	events  [numKinds]int64
	reasons map[decode.Reason]int64
}

func (c *counts) reason(r decode.Reason, n int64) {
	if c.reasons == nil {
		c.reasons = map[decode.Reason]int64{}
	}
	c.reasons[r] += n
}

func (c *counts) eventCount() int64 {
	var n int64
	for _, e := range c.events {
		n += e
	}
	return n
}

// split returns the reason counts as skipped and repaired maps.
func (c *counts) split() (skipped, repaired map[decode.Reason]int64) {
	skipped, repaired = map[decode.Reason]int64{}, map[decode.Reason]int64{}
	for r, n := range c.reasons {
		if repairedReasons[r] {
			repaired[r] += n
		} else {
			skipped[r] += n
		}
	}
	return skipped, repaired
}
