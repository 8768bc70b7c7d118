package loader

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Direct COPY: a unit's creates go straight into their table when that is exactly what
// sequential application does.
//
// The creates of users (one per DID), of posts (collapsed by uri) and of one phase of a pair
// table (phase.go) follow the deletes that precede them, and sequential application applies
// them in pos order, skipping each create whose uri or pair exists at that point: in a row that
// was there before, or in one an earlier create of the same phase wrote. target.kept works that
// out in memory from what the writer knows exists (probed keys) and takes every other key not
// to exist; the kept creates are pairwise distinct on every unique key, so one COPY writes
// them, in any order. So:
//   - blind: a COPY of the kept creates that succeeds met no existing key, and its result is the
//     sequential one. When one existed, the COPY fails with a unique violation inside a
//     savepoint; rolling back to it undoes the COPY alone, and the creates are probed. Creates
//     whose keys an earlier unit of the run wrote (suspects, from seenKeys) are probed before
//     the blind COPY, in the statements' first batch.
//   - probed: one statement reads which creates' keys exist (index probes, in the transaction,
//     after the deletes), and a COPY writes the kept ones.
//   - staging: should that COPY still meet a key (another session committed it in between), the
//     creates go through a staging table and an insert that skips existing keys.
//
// A user's create carries the handle and profile the unit ends with: sequential application
// inserts it with 'handle.invalid' and then sets them, and the unit's updates of handles and
// profiles run (before the COPY) on the users that exist already; the row counts are reported
// as those updates would have counted them.
//
// A blind COPY costs nothing beyond the COPY when no key exists; a probe costs one or two index
// lookups per create; a blind COPY that fails costs its work up to the first existing key, then
// the probe. So a table whose blind COPY failed is probed first in the next 1, 2, 4, ... up to
// maxDirectSkip units that write it, and COPYed blind again after that and after every blind
// success: a load into a range that the database already holds (the live app wrote it first)
// fails a blind COPY once in a while and otherwise probes, which is cheaper than the staging
// path it replaced.

// maxDirectSkip is the most units a table is probed first after blind failures.
const maxDirectSkip = 64

// maxDirectCopies bounds the direct COPYs of one transaction: each is a subtransaction, and a
// transaction with more than 64 of them makes every other session's snapshots slower.
const maxDirectCopies = 24

// directPolicy says when a unit tries the blind COPY; tests force the extremes.
type directPolicy uint8

const (
	directAdaptive directPolicy = iota // back off after failures (the default)
	directNever                        // always the staging path
	directAlways                       // blind every time, failures or not
	directProbe                        // always probe first
)

// directMode is how a unit writes a table's creates.
type directMode uint8

const (
	modeStaging directMode = iota // staging table and INSERT
	modeBlind                     // COPY them all
	modeProbe                     // read which keys exist, COPY the others
)

// directState is one table's back-off; only the writer goroutine uses it.
type directState struct {
	skip int // units to probe first after the next failure
	wait int // units still to probe first
}

// directCounts are what the direct COPY did to one table in a run (tests read them).
type directCounts struct {
	blind     int // units whose blind COPYs into the table all succeeded
	fallbacks int // units whose blind COPY met an existing row (and probed)
	probed    int // units that probed first while backing off
	staged    int // units whose creates went through staging after all (a concurrent writer)
}

// directMode returns how a unit that writes tab writes its creates.
func (l *Loader) directMode(tab Table, safe bool) directMode {
	m := l.modeOf(tab, safe)
	if m == modeProbe {
		l.directCounts[tab].probed++
		if l.direct == directAdaptive {
			l.directState[tab].wait--
		}
	}
	return m
}

// modeOf is the mode directMode gives a unit's creates of tab now, without counting the unit.
func (l *Loader) modeOf(tab Table, safe bool) directMode {
	name := tab.String()
	if safe || l.schema.extraKeys[name] || !l.schema.direct[name] || l.direct == directNever {
		// Tables with unique indexes beyond SCHEMA.md's may have creates that collide with
		// each other; ON CONFLICT with ORDER BY pos is the exact way for them.
		return modeStaging
	}
	switch {
	case l.direct == directAlways:
		return modeBlind
	case l.direct == directProbe || l.directState[tab].wait > 0:
		return modeProbe
	}
	return modeBlind
}

// directDone records how a unit's direct COPYs into tab went.
func (l *Loader) directDone(tab Table, blindOK, blindFailed, staged bool) {
	st := &l.directState[tab]
	c := &l.directCounts[tab]
	if staged {
		c.staged++
	}
	switch {
	case blindFailed:
		c.fallbacks++
		st.skip = min(max(1, st.skip*2), maxDirectSkip)
		st.wait = st.skip
	case blindOK:
		c.blind++
		st.skip = 0
	}
}

// exist says which of a create's keys a probe found in its table.
type exist uint8

const (
	existKey  exist = 1 << iota // the uri (the did in users)
	existPair                   // the pair, in a pair table
)

// target is a set of creates on their way straight into a table: a table's creates in a unit,
// or one phase's.
//
// Which creates the COPY writes is sequential application worked out in memory: in pos order,
// a create is written unless its key or pair exists when it comes, whether in a row that was
// there before (known from a probe) or in one an earlier create of the target writes. Keys no
// probe looked at are taken not to exist: the COPY checks that, failing when one does.
type target struct {
	table string
	cols  []string
	n     int
	row   func(i int, r *copyRow) // encodes create i
	// key returns create i's key, and its pair when the target is a pair table's (pairs set).
	key func(i int) (string, pairKey)
	// hashes returns create i's uri and pair hashes (seen.go), when the target has them: kept
	// then looks keys up by hash, comparing the keys themselves only when hashes meet.
	hashes func(i int) (keyHash, keyHash)
	pairs  bool
	// ahead reports whether create i was written by the unit's head start (head.go): no other
	// create or op of the unit has its uri or pair, so it is simply not written again.
	ahead func(i int) bool
	// distinct says the creates are pairwise distinct on uri and pair (a phase the planner
	// found unordered), so only probes drop creates.
	distinct bool
	// byKey lists the creates in key order; when nil, keySorted says they are in key order.
	byKey     []int32
	keySorted bool
	desc      bool              // copy gives the creates in descending key order
	probe     string            // a query returning (ordinal from 1, key exists, pair exists) of the creates it is given whose keys exist
	args      func([]int) []any // the probe's arguments for the creates of idx, in that order

	// suspects are creates whose key or pair an earlier unit of this run wrote (seenKeys): they
	// are probed even before a blind COPY, which then rarely meets an existing key.
	suspects []int
	// doomed says create i is to be left out when kept (pending.go); such creates are suspects,
	// so that kept is exact for them without the COPY's check. left lists those the last copy
	// left out.
	doomed func(i int) bool
	left   []int

	blind       bool          // COPY them all first (after the suspects' probe)
	wasBlind    bool          // the unit started with a blind COPY
	probed      bool          // every create was probed
	found       map[int]exist // what the probes found, by index; nil until a probe is queued
	ok          bool          // the creates are applied
	staging     bool          // they must go through staging
	rows        int64         // rows inserted
	blindFailed bool          // a blind COPY met an existing key
}

// kept returns the indexes of the creates the COPY writes, in order: the creates in pos order
// whose key and pair neither a probe found nor an earlier kept create takes.
func (t *target) kept() []int {
	keep := make([]int, 0, t.n)
	if !t.pairs || t.distinct {
		// Keys pairwise distinct (users by did, posts by uri, an unordered phase's creates):
		// only probes drop creates.
		for i := range t.n {
			if (len(t.found) == 0 || t.found[i] == 0) && !t.isAhead(i) {
				keep = append(keep, i)
			}
		}
		return keep
	}
	if t.hashes != nil {
		if keep, ok := t.keptByHash(keep); ok {
			return keep
		}
	}
	keys := make(map[string]struct{}, t.n)
	pairs := make(map[pairKey]struct{}, t.n)
	for i, e := range t.found {
		k, pk := t.key(i)
		if e&existKey != 0 {
			keys[k] = struct{}{}
		}
		if e&existPair != 0 {
			pairs[pk] = struct{}{}
		}
	}
	for i := range t.n {
		if t.isAhead(i) {
			continue
		}
		k, pk := t.key(i)
		if _, ok := keys[k]; ok {
			continue
		}
		if _, ok := pairs[pk]; ok {
			continue
		}
		keys[k], pairs[pk] = struct{}{}, struct{}{}
		keep = append(keep, i)
	}
	return keep
}

// isAhead reports whether the head start wrote create i.
func (t *target) isAhead(i int) bool { return t.ahead != nil && t.ahead(i) }

// keptByHash is kept with the keys' hashes for map keys, which hash and compare faster than the
// strings of the uri and the pair. When two creates' hashes meet, their keys are compared; when
// the keys differ (two keys with one 64-bit hash), it gives up and reports false.
func (t *target) keptByHash(keep []int) ([]int, bool) {
	keys := make(map[keyHash]int, t.n) // hash -> a create with that uri
	pairs := make(map[keyHash]int, t.n)
	same := func(i, j int, pair bool) bool {
		ki, pi := t.key(i)
		kj, pj := t.key(j)
		if pair {
			return pi == pj
		}
		return ki == kj
	}
	// holds reports whether m has h for create i's key; false when a different key has h.
	holds := func(m map[keyHash]int, h keyHash, i int, pair bool) (held, clash bool) {
		j, ok := m[h]
		if !ok {
			return false, false
		}
		if !same(i, j, pair) {
			return false, true
		}
		return true, false
	}
	for i, e := range t.found {
		uh, ph := t.hashes(i)
		if e&existKey != 0 {
			if _, clash := holds(keys, uh, i, false); clash {
				return nil, false
			}
			keys[uh] = i
		}
		if e&existPair != 0 {
			if _, clash := holds(pairs, ph, i, true); clash {
				return nil, false
			}
			pairs[ph] = i
		}
	}
	for i := range t.n {
		if t.isAhead(i) {
			continue
		}
		uh, ph := t.hashes(i)
		held, clash := holds(keys, uh, i, false)
		if clash {
			return nil, false
		}
		if held {
			continue
		}
		if held, clash = holds(pairs, ph, i, true); clash {
			return nil, false
		} else if held {
			continue
		}
		keys[uh], pairs[ph] = i, i
		keep = append(keep, i)
	}
	return keep, true
}

// queueProbe queues the read of which keys of the creates of idx (all when nil) exist.
func (t *target) queueProbe(tp *txPipe, idx []int) {
	if idx == nil {
		t.probed = true
		idx = make([]int, t.n)
		for i := range idx {
			idx[i] = i
		}
	}
	idx = t.inKeyOrder(idx)
	if t.found == nil {
		t.found = map[int]exist{}
	}
	found := t.found
	tp.probing = true
	tp.queue(t.probe, t.args(idx)...).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var j int64
			var key, pair bool
			if err := rows.Scan(&j, &key, &pair); err != nil {
				return err
			}
			if j < 1 || int(j) > len(idx) {
				return fmt.Errorf("loader: probe of %s returned ordinal %d of %d", t.table, j, len(idx))
			}
			var e exist
			if key {
				e |= existKey
			}
			if pair {
				e |= existPair
			}
			found[idx[j-1]] = e
		}
		return rows.Err()
	})
}

// inKeyOrder returns the creates of idx in key order (byKey), for a probe or a COPY that walks
// each index in its order (the uri starts with the author's did, which the pair indexes start
// with too) instead of all over it; a create listed twice comes once. idx is left as it is when
// the creates' key order is not known, is their pos order (keySorted), or byKey does not list
// them all.
func (t *target) inKeyOrder(idx []int) []int {
	if t.byKey == nil || len(idx) < 2 {
		return idx
	}
	in := make([]bool, t.n)
	distinct := 0
	for _, i := range idx {
		if !in[i] {
			in[i] = true
			distinct++
		}
	}
	sorted := make([]int, 0, distinct)
	for _, i := range t.byKey {
		if in[i] {
			in[i] = false
			sorted = append(sorted, int(i))
		}
	}
	if len(sorted) != distinct {
		return idx // byKey does not list every create: the probe must still see them all
	}
	return sorted
}

// queueSuspects queues the probe of the suspects, if any and not probed yet.
func (t *target) queueSuspects(tp *txPipe) {
	if len(t.suspects) > 0 && t.found == nil {
		t.queueProbe(tp, t.suspects)
	}
}

// unprobe forgets the probes made before statements that changed the table.
func (t *target) unprobe() { t.probed, t.found = false, nil }

// copy returns the target's COPY: the creates kept, in key order (byKey, or the creates' own
// order when keySorted), descending when desc. The creates of a COPY are pairwise distinct on
// every key, so their order changes nothing but where rows land: in key order, consecutive
// inserts meet the same index pages (the uri starts with the author's did, so the author's and
// the pair's indexes follow too), which costs the server fewer buffer reads, evictions and
// full-page writes than inserts all over every index. The planner sorts, off the writer's path.
func (t *target) copy() *directCopy {
	keep := t.kept()
	t.left = t.left[:0]
	if t.doomed != nil {
		n := 0
		for _, i := range keep {
			if t.doomed(i) {
				t.left = append(t.left, i)
			} else {
				keep[n] = i
				n++
			}
		}
		keep = keep[:n]
	}
	switch {
	case t.byKey != nil:
		keep = t.inKeyOrder(keep)
	case !t.keySorted:
		slices.SortFunc(keep, func(i, j int) int {
			ki, _ := t.key(i)
			kj, _ := t.key(j)
			return strings.Compare(ki, kj)
		})
	}
	if t.desc {
		slices.Reverse(keep)
	}
	return &directCopy{table: t.table, cols: t.cols, n: len(keep), row: func(i int, r *copyRow) { t.row(keep[i], r) }}
}

// applyDirect writes the targets' creates straight into their tables, after the queued
// statements: blind targets COPY them all (less the suspects a probe found), the others are
// probed first (unless they were) and COPY the rest; a blind COPY that meets an existing key is
// undone, probed and COPYed again. It takes one round trip for the COPYs and one more for each
// round of probes not queued with earlier statements. Targets left with staging set must go
// through staging.
func (tp *txPipe) applyDirect(ctx context.Context, targets []*target) error {
	for range 2 {
		for _, t := range targets {
			if t.ok || t.staging {
				continue
			}
			if !t.blind && !t.probed {
				t.queueProbe(tp, nil)
			} else {
				t.queueSuspects(tp)
			}
		}
		if tp.probing {
			if err := tp.flush(ctx); err != nil {
				return fmt.Errorf("probe keys: %w", err)
			}
		}
		var list []*directCopy
		var of []*target
		for _, t := range targets {
			if t.ok || t.staging {
				continue
			}
			c := t.copy()
			if c.n == 0 {
				t.ok = true
				continue
			}
			list = append(list, c)
			of = append(of, t)
		}
		if len(list) == 0 {
			break
		}
		if err := tp.copyDirectAll(ctx, list); err != nil {
			return err
		}
		for i, c := range list {
			t := of[i]
			switch {
			case c.ok:
				t.ok, t.rows = true, c.rows
			case t.blind:
				t.blind, t.blindFailed = false, true
			default:
				t.staging = true
			}
		}
	}
	for _, t := range targets {
		if !t.ok {
			t.staging = true
		}
	}
	return nil
}

// probeByKey is the probe of creates with one key column: the ordinals of those whose key
// exists in table.
func probeByKey(table, col string) string {
	return fmt.Sprintf(`SELECT s.i, true, false FROM unnest($1::text[]) WITH ORDINALITY AS s(k, i) WHERE EXISTS (SELECT 1 FROM %s AS t WHERE t.%s = s.k)`, table, col)
}

// probePairs is the probe of a pair table's creates: the ordinals of those whose uri or pair
// exists, and which. Scalar subqueries rather than EXISTS: the planner may run an EXISTS as a
// hashed subplan, which reads the whole table, where a few index lookups per row are what it
// takes. OFFSET 0 keeps the subqueries from being evaluated again in the outer WHERE.
func probePairs(table string, cols [2]string) string {
	return fmt.Sprintf(`SELECT i, k, p FROM (SELECT s.i, (SELECT true FROM %[1]s AS t WHERE t.uri = s.uri LIMIT 1) IS NOT NULL AS k, (SELECT true FROM %[1]s AS t WHERE t.%[2]s = s.a AND t.%[3]s = s.b LIMIT 1) IS NOT NULL AS p FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS s(uri, a, b, i) OFFSET 0) AS x WHERE k OR p`, table, cols[0], cols[1])
}
