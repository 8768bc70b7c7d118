package loader

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Direct COPY: a unit's creates go straight into their table when that is exactly what
// sequential application does.
//
// The creates of users (one per DID), of posts (collapsed by uri) and of an unordered phase of a
// pair table (phase.go) are pairwise distinct on every unique key of SCHEMA.md, and they follow
// the deletes that precede them; sequential application skips exactly the creates whose key
// already exists at that point. So:
//   - blind: a COPY of all of them that succeeds met no existing key, and its result is the
//     sequential one. When one existed, the COPY fails with a unique violation inside a
//     savepoint; rolling back to it undoes the COPY alone, and the creates are probed.
//   - probed: one statement reads which creates' keys exist (index probes, in the transaction,
//     after the deletes), and a COPY writes the others.
//   - staging: should that COPY still meet a key (another session committed it in between), the
//     creates go through a staging table and an anti-join insert, which skips existing keys.
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
	name := tab.String()
	if safe || l.schema.extraKeys[name] || !l.schema.direct[name] || l.direct == directNever {
		// Tables with unique indexes beyond SCHEMA.md's may have creates that collide with
		// each other; ON CONFLICT with ORDER BY pos is the exact way for them.
		return modeStaging
	}
	switch l.direct {
	case directAlways:
		return modeBlind
	case directProbe:
		l.directCounts[tab].probed++
		return modeProbe
	}
	st := &l.directState[tab]
	if st.wait > 0 {
		st.wait--
		l.directCounts[tab].probed++
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

// target is a set of creates on their way straight into a table: a table's creates in a unit,
// or one phase's.
type target struct {
	table string
	cols  []string
	n     int
	row   func(i int, r *copyRow) // encodes create i
	probe string                  // a query returning the ordinals (from 1) of the creates whose keys exist
	args  func() []any            // its arguments

	blind       bool         // COPY them all first
	wasBlind    bool         // the unit started with a blind COPY
	probed      bool         // drop holds the creates whose keys exist
	drop        map[int]bool // by index
	ok          bool         // the creates are applied
	staging     bool         // they must go through staging
	rows        int64        // rows inserted
	blindFailed bool         // a blind COPY met an existing key
}

// kept returns the indexes of the creates the COPY writes.
func (t *target) kept() []int {
	keep := make([]int, 0, t.n-len(t.drop))
	for i := range t.n {
		if !t.drop[i] {
			keep = append(keep, i)
		}
	}
	return keep
}

// queueProbe queues the read of which creates' keys exist.
func (t *target) queueProbe(tp *txPipe) {
	t.probed, t.drop = true, map[int]bool{}
	drop := t.drop
	tp.queue(t.probe, t.args()...).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var i int64
			if err := rows.Scan(&i); err != nil {
				return err
			}
			drop[int(i-1)] = true
		}
		return rows.Err()
	})
}

// unprobe forgets a probe made before statements that changed the table.
func (t *target) unprobe() { t.probed, t.drop = false, nil }

// copy returns the target's COPY: every create, or when probed the ones whose keys do not exist.
func (t *target) copy() *directCopy {
	c := &directCopy{table: t.table, cols: t.cols, n: t.n, row: t.row}
	if t.probed {
		keep := t.kept()
		c.n = len(keep)
		c.row = func(i int, r *copyRow) { t.row(keep[i], r) }
	}
	return c
}

// applyDirect writes the targets' creates straight into their tables, after the queued
// statements: blind targets COPY them all, the others are probed first (unless they were) and
// COPY the rest; a blind COPY that meets an existing key is undone, probed and COPYed again.
// It takes one round trip for the COPYs and one more for each round of probes. Targets left
// with staging set must go through staging.
func (tp *txPipe) applyDirect(ctx context.Context, targets []*target) error {
	for range 2 {
		probes := false
		for _, t := range targets {
			if !t.ok && !t.staging && !t.blind && !t.probed {
				t.queueProbe(tp)
				probes = true
			}
		}
		if probes {
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
	return fmt.Sprintf(`SELECT s.i FROM unnest($1::text[]) WITH ORDINALITY AS s(k, i) WHERE EXISTS (SELECT 1 FROM %s AS t WHERE t.%s = s.k)`, table, col)
}

// probePairs is the probe of a pair table's creates: the ordinals of those whose uri or pair
// exists. Scalar subqueries rather than EXISTS: the planner may run an EXISTS as a hashed
// subplan, which reads the whole table, where a few index lookups per row are what it takes.
func probePairs(table string, cols [2]string) string {
	return fmt.Sprintf(`SELECT s.i FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS s(uri, a, b, i) WHERE (SELECT true FROM %[1]s AS t WHERE t.uri = s.uri LIMIT 1) OR (SELECT true FROM %[1]s AS t WHERE t.%[2]s = s.a AND t.%[3]s = s.b LIMIT 1)`, table, cols[0], cols[1])
}
