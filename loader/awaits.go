package loader

import (
	"fmt"
	"strings"
	"time"

	"github.com/backfill/backfill/decode"
)

// Awaited deletes: rows a load leaves out (hints.go) are missing from the database until it
// applies the later deletes that remove them. A load that stops early and is resumed from the
// same spool with the same window applies them; one resumed with a narrower window or fewer
// collections, or from a spool that ends before them, would leave the rows missing for good.
// So backfill_loader keeps, per relay, the last seq of the deletes that rows left out await
// (awaits_seq) and the window and collections of the run that left the last of them out; while
// the relay's mark is below awaits_seq, a run must load that relay with the same window and
// collections or wider ones (checked before its first unit of the relay), and a run that ends
// with the mark still below awaits_seq fails, saying so.

// awaiting is a relay's awaited deletes, as committed.
type awaiting struct {
	seq          int64
	since, until time.Time // zero: unbounded
	collections  int32     // bitmask of decode.Collection; 0: all
}

// awaiting returns the awaited deletes up to seq of a run with l's window and collections.
func (l *Loader) awaiting(seq int64) awaiting {
	return awaiting{seq: seq, since: l.cfg.Since, until: l.cfg.Until, collections: collectionMask(l.cfg.Collections)}
}

// collectionMask returns cfg's collections as a bitmask, 0 for all.
func collectionMask(cols []decode.Collection) int32 {
	var m int32
	for _, c := range cols {
		m |= 1 << c
	}
	return m
}

// checkAwaits reports an error when a run with cfg would not apply the deletes that rows left
// out of relay's mark m await.
func checkAwaits(cfg Config, relay string, m mark, a awaiting) error {
	if a.seq <= m.seq {
		return nil
	}
	var narrower []string
	if !cfg.Since.IsZero() && (a.since.IsZero() || cfg.Since.After(a.since)) {
		narrower = append(narrower, fmt.Sprintf("--since %s (it was %s)", cfg.Since.Format(time.RFC3339Nano), boundString(a.since)))
	}
	if !cfg.Until.IsZero() && (a.until.IsZero() || cfg.Until.Before(a.until)) {
		narrower = append(narrower, fmt.Sprintf("--until %s (it was %s)", cfg.Until.Format(time.RFC3339Nano), boundString(a.until)))
	}
	if want, have := a.collections, collectionMask(cfg.Collections); have != 0 && (want == 0 || want&^have != 0) {
		narrower = append(narrower, fmt.Sprintf("--collections %s (it was %s)", maskString(have), maskString(want)))
	}
	if len(narrower) == 0 {
		return nil
	}
	return fmt.Errorf("loader: relay %s: an earlier load left out rows that events up to seq %d delete, and this load is at seq %d; "+
		"with %s it would not apply those events and the rows would stay missing: load with the earlier window and collections (or wider ones) first",
		relay, a.seq, m.seq, strings.Join(narrower, ", "))
}

// unreachedError is a run that ended before the deletes that rows left out of relay await.
func unreachedError(relay string, m mark, a awaiting) error {
	return fmt.Errorf("loader: relay %s: rows left out of this database await events up to seq %d, but the spool holds nothing to load past seq %d: "+
		"load a spool of %s that reaches seq %d to complete it", relay, a.seq, m.seq, relay, a.seq)
}

func boundString(t time.Time) string {
	if t.IsZero() {
		return "unbounded"
	}
	return t.Format(time.RFC3339Nano)
}

func maskString(m int32) string {
	if m == 0 {
		return "all"
	}
	var names []string
	for c := decode.CollectionOther + 1; c < decode.NumCollections; c++ {
		if m&(1<<c) != 0 {
			names = append(names, collectionFlagNames[c])
		}
	}
	return strings.Join(names, ",")
}

// collectionFlagNames are --collections' names of the collections.
var collectionFlagNames = [decode.NumCollections]string{
	decode.CollectionPost: "post", decode.CollectionLike: "like", decode.CollectionRepost: "repost",
	decode.CollectionFollow: "follow", decode.CollectionBlock: "block", decode.CollectionProfile: "profile",
}
