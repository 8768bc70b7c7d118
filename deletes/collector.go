package deletes

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/backfill/backfill/decode"
	"github.com/backfill/backfill/internal/fsync"
	"github.com/backfill/backfill/spool"
)

// indexer turns frames into entries and barriers, with the OpsOnly decoder a fetch can afford.
type indexer struct {
	dec      *decode.Decoder
	entries  []Entry
	barriers []int64
}

func newIndexer() indexer {
	return indexer{dec: decode.NewDecoder(decode.Options{OpsOnly: true})}
}

// add indexes the frame stored under spool seq seq. The rules are the exactness contract of
// doc.go: what the loader's full decoder would make of the frame, read with OpsOnly.
func (x *indexer) add(seq int64, frame []byte) {
	ev, err := x.dec.Decode(frame)
	if err != nil {
		return
	}
	switch ev.Kind {
	case decode.KindCommit, decode.KindIdentity, decode.KindAccount, decode.KindSync:
		if ev.Seq > seq {
			// The loader's high-water mark would jump past the frames that follow.
			x.barriers = append(x.barriers, seq)
		}
	}
	if ev.Kind != decode.KindCommit || ev.Seq != seq || ev.Time.IsZero() {
		return
	}
	us := ev.Time.UnixMicro()
	if us == 0 {
		return // 1970-01-01T00:00:00Z: an entry's time is never 0
	}
	for _, p := range ev.Problems {
		if p.Reason == decode.ReasonBadDID {
			return // with OpsOnly, only the repo DID can be bad
		}
	}
	for i := range ev.Ops {
		op := &ev.Ops[i]
		// An update replaces the row at its uri (the loader deletes it, then inserts the new
		// one), so it ends the row before it like a delete does.
		if (op.Action == decode.ActionDelete || op.Action == decode.ActionUpdate) && op.URI != "" && indexed(op.Collection) {
			x.entries = append(x.entries, Entry{Seq: seq, Time: us, Key: Key(op.URI)})
		}
	}
}

// indexed reports whether deletes of c are indexed: the five tables keyed by a record's uri,
// and profiles (the decoder gives CollectionProfile only to rkey self, the users row's columns,
// which a delete or update of it sets whole).
func indexed(c decode.Collection) bool {
	switch c {
	case decode.CollectionPost, decode.CollectionLike, decode.CollectionRepost, decode.CollectionFollow, decode.CollectionBlock, decode.CollectionProfile:
		return true
	}
	return false
}

// run is a range of consecutive seqs lo..hi, every one of them added.
type run struct{ lo, hi int64 }

// Collector builds the sidecars of the segments a spool.Writer seals. Add every frame, in order,
// before appending it to the writer; pass OnSeal as spool.Options.OnSeal. It holds the pending
// entries and barriers and the runs of seqs added, never frames. Like the Writer, it is for one
// goroutine (OnSeal runs on the writer's).
type Collector struct {
	ix   indexer
	runs []run // seqs added and not yet sealed, ascending
	last int64 // the last seq added
	err  error
}

// NewCollector returns an empty Collector.
func NewCollector() *Collector {
	return &Collector{ix: newIndexer()}
}

// Add indexes the frame that is about to be appended under spool seq seq. A seq not above the
// last one added is ignored, as Writer.Append refuses it.
func (c *Collector) Add(seq int64, frame []byte) {
	if seq <= c.last {
		return
	}
	c.last = seq
	if n := len(c.runs); n > 0 && c.runs[n-1].hi == seq-1 {
		c.runs[n-1].hi = seq
	} else {
		c.runs = append(c.runs, run{seq, seq})
	}
	c.ix.add(seq, frame)
}

// OnSeal writes the index of the frames added with seqs in [info.FirstSeq, info.LastSeq] to
// Path(info.Path) atomically (temporary file in the same directory, fsync, rename, fsync the
// directory), and forgets them and any added below; frames added with a seq above info.LastSeq
// stay for the next segment (the writer seals a segment that is too old before appending the
// frame that found it so). When the collector did not see exactly info.Count frames in that
// range, from info.FirstSeq to info.LastSeq (a segment sealed by recovery after a crash, or
// frames added to another writer), it writes nothing and removes a stale sidecar at that path
// if one exists. Errors are kept: Err returns the first.
func (c *Collector) OnSeal(info spool.SegmentInfo) {
	var n int64
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, r := range c.runs {
		a, b := max(r.lo, info.FirstSeq), min(r.hi, info.LastSeq)
		if a <= b {
			n += b - a + 1
			lo, hi = min(lo, a), max(hi, b)
		}
	}
	x := &Index{
		FirstSeq: info.FirstSeq,
		LastSeq:  info.LastSeq,
		Checksum: info.Checksum,
		Frames:   info.Count,
		Barriers: inRange(c.ix.barriers, info, func(s int64) int64 { return s }),
		Entries:  inRange(c.ix.entries, info, func(e Entry) int64 { return e.Seq }),
	}
	c.forget(info.LastSeq)

	path := Path(info.Path)
	if n != info.Count || lo != info.FirstSeq || hi != info.LastSeq {
		err := os.Remove(path)
		switch {
		case err == nil:
			err = fsync.Dir(filepath.Dir(path))
		case errors.Is(err, fs.ErrNotExist):
			err = nil
		default:
			err = fmt.Errorf("remove stale delete index: %w", err)
		}
		c.keep(err)
		return
	}
	c.keep(writeIndex(path, x))
}

// Err returns the first error OnSeal met, nil when none.
func (c *Collector) Err() error { return c.err }

func (c *Collector) keep(err error) {
	if c.err == nil {
		c.err = err
	}
}

// forget drops everything added with a seq up to last.
func (c *Collector) forget(last int64) {
	c.ix.barriers = dropThrough(c.ix.barriers, last, func(s int64) int64 { return s })
	c.ix.entries = dropThrough(c.ix.entries, last, func(e Entry) int64 { return e.Seq })
	i := 0
	for i < len(c.runs) && c.runs[i].hi <= last {
		i++
	}
	c.runs = slices.Delete(c.runs, 0, i)
	if len(c.runs) > 0 && c.runs[0].lo <= last {
		c.runs[0].lo = last + 1
	}
}

// inRange returns a copy of the elements of s (ascending by seq) with seqs in the segment's range.
func inRange[T any](s []T, info spool.SegmentInfo, seq func(T) int64) []T {
	i := 0
	for i < len(s) && seq(s[i]) < info.FirstSeq {
		i++
	}
	j := i
	for j < len(s) && seq(s[j]) <= info.LastSeq {
		j++
	}
	if i == j {
		return nil
	}
	return slices.Clone(s[i:j])
}

// dropThrough removes the leading elements of s (ascending by seq) with seqs up to last.
func dropThrough[T any](s []T, last int64, seq func(T) int64) []T {
	i := 0
	for i < len(s) && seq(s[i]) <= last {
		i++
	}
	return slices.Delete(s, 0, i)
}

// Build reads the sealed segment info describes (spool.OpenSegment(info.Path)) and writes its
// sidecar, as a Collector would have (for spools written before sidecars existed, or copied
// without them). A segment whose header and trailer disagree with info is an error.
func Build(info spool.SegmentInfo) error {
	r, err := spool.OpenSegment(info.Path)
	if err != nil {
		return fmt.Errorf("build delete index: %w", err)
	}
	defer r.Close()
	got := r.Info()
	if got.FirstSeq != info.FirstSeq || got.LastSeq != info.LastSeq || got.Checksum != info.Checksum || got.Count != info.Count {
		return fmt.Errorf("build delete index: %s holds segment %s, want %s", info.Path, got.ID(), info.ID())
	}
	ix := newIndexer()
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("build delete index: %w", err)
		}
		ix.add(rec.Seq, rec.Frame)
	}
	return writeIndex(Path(info.Path), &Index{
		FirstSeq: info.FirstSeq,
		LastSeq:  info.LastSeq,
		Checksum: info.Checksum,
		Frames:   info.Count,
		Barriers: ix.barriers,
		Entries:  ix.entries,
	})
}
