package loader

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// Head start: two connections take turns with the units. While one writes unit N, the other
// opens the transaction of unit N+1 and COPYs into it the creates of N+1 that nothing before
// them in seq order can change or notice; once N has committed, that transaction goes on with
// the rest of N+1 as usual (attempt), the creates it already holds taken as rows that exist.
// Each unit is still one transaction, and the units commit in order, so what a reader sees,
// and what a crash leaves, is the same as with one connection. N+1 begins ahead as soon as N
// is taken for writing, while N's own early COPY may still run on the other connection: at the
// end of a load, when the loader has nothing left to decode, the two COPYs then take both CPUs.
//
// Why: one connection leaves the server idle whenever the loader works out a unit's next batch,
// waits for its commit or reads its results, and then leaves the loader's decoding waiting
// for the CPU the server takes; the unit that follows has its bulk (the creates of rows nothing
// else touches) ready to go in meanwhile.
//
// Which creates: a create c of unit N+1 whose key (uri) and, in a pair table, pair
//   - no op of unit N has (its posts by uri; its pair-table ops by the hashes of their uris and
//     of their creates' pairs, which may only exclude more), nor a pending row (pending.go), so
//     that the row sequential application sees for them before c is the committed one;
//   - no earlier unit of the run wrote (the filter of written keys, seen.go): such a key may
//     exist, and the COPY would fail;
//   - no op of unit N+1 other than c touches: a post's net effect without a delete; a pair
//     create (of any phase) that is the only op of the unit with its uri and the only create
//     with its pair (counted by hash: two keys in one slot keep both back), and which is not
//     doomed (left out, pending.go).
//
// Sequential application inserts such a c exactly when no row has its uri or pair when c comes.
// The COPY of c runs against the committed rows and fails if one has its key (its savepoint is
// undone, and that table's creates go the usual way). The only rows that could appear or go
// in between are those of unit N and of N+1's ops before c. N creates neither key, and when N
// deletes a committed row with c's pair (by another uri), the COPY's check of the pair waits
// for N's COMMIT and then finds the row gone, as sequential application does. N+1's ops before
// c do not touch c's uri, and when one deletes a committed row with c's pair, the COPY found
// that row and failed. Nothing in N+1 after c touches c's uri or creates its pair. So the row
// is where sequential application puts it, and no statement of N+1 can tell it came early.
//
// No deadlock: unit N never waits for N+1's rows (it writes none of their keys, and a reader
// waits for no writer), while N+1 may wait for N (above), which commits without waiting for
// N+1. A unit commits only after the one before it has.
type headStart struct {
	onMain bool                     // on l.conn (else on the helper connection, opened when needed)
	conn   *pgx.Conn                // set by the goroutine
	tp     *txPipe                  // the transaction (only queued when nothing went ahead); nil when none
	posts  []*postState             // the posts written
	pairs  [numPairTables][]*pairOp // each pair table's creates written
	rows   [NumTables]int64
	done   chan struct{}
	err    error // set: the transaction is not usable (rolled back, or the connection lost)
}

// headMinRows is the fewest creates worth a head start: below it, the round trips cost as much
// as they save.
const headMinRows = 256

// usable reports whether the unit can go on in h's transaction; it waits for h's goroutine.
func (h *headStart) usable() bool {
	if h == nil {
		return false
	}
	<-h.done
	return h.err == nil && h.tp != nil
}

// settled reports whether h's goroutine is done, without waiting for it.
func (h *headStart) settled() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// headPlan is what a head start of the unit after prev needs of the writer's state, taken
// when prev's write begins: the watcher's goroutine starts the head start later, while prev is
// written (and the writer changes that state).
type headPlan struct {
	prev    *writeUnit
	blind   [NumTables]bool
	onMain  bool
	conn    *pgx.Conn // the main connection (onMain), or the helper when it is open
	reverse bool      // the unit after prev COPYs its tables in reverse order
	min     int
}

// planHead returns the plan of the head start of the unit after prev, on the connection prev's
// first attempt does not use; nil when there is none: the main connection is down, or the
// policy or the back-off of direct COPYs keeps every table from it. Writer goroutine only.
func (l *Loader) planHead(prev *writeUnit) *headPlan {
	if l.noHead || l.cfg.MaxEventsPerSec > 0 {
		// Under a rate limit a unit that began ahead would wait out the limit's pauses too,
		// holding its transaction open.
		return nil
	}
	hp := &headPlan{prev: prev, reverse: !l.reverse, min: l.headMin}
	any := false
	for t := TablePosts; t < NumTables; t++ {
		hp.blind[t] = l.modeOf(t, false) == modeBlind
		any = any || hp.blind[t]
	}
	if !any {
		return nil
	}
	if prev.head != nil && !prev.head.onMain {
		// prev goes on on the helper: the next unit takes the main connection. Should prev's
		// head start turn out unusable, prev needs the main connection back, and the writer
		// stops this head start first (the loop in Run).
		if l.conn == nil || l.conn.IsClosed() {
			return nil
		}
		hp.onMain, hp.conn = true, l.conn
	} else if l.helper != nil && !l.helper.IsClosed() {
		hp.conn = l.helper
	}
	return hp
}

// startHead starts next's head start as hp plans it.
func (l *Loader) startHead(ctx context.Context, hp *headPlan, next *writeUnit) *headStart {
	h := &headStart{done: make(chan struct{}), onMain: hp.onMain}
	helper := hp.conn
	if hp.onMain {
		h.conn = hp.conn
	}
	pp, np := hp.prev.plan, next.plan
	// What the writer's goroutine changes while prev is written is read under keysMu; the rest
	// (the plans) nobody writes any more.
	reverse := hp.reverse
	go func() {
		defer close(h.done)
		var err error
		if !h.onMain {
			if helper == nil {
				if helper, err = l.dial(ctx, false); err != nil {
					h.err = err
					return
				}
			}
			h.conn = helper
		}
		targets, tabs := l.headTargets(pp, np, hp.blind, h)
		n := 0
		for _, t := range targets {
			n += t.n
		}
		if n < hp.min {
			// Too few creates for COPYs of their own: they go the usual way, but the unit still
			// goes on this connection (the next unit's head start may already have the other),
			// in a transaction begun with the unit's first batch.
			h.posts, h.pairs = nil, [numPairTables][]*pairOp{}
			h.tp = newUnitPipe(h.conn)
			return
		}
		if l.beforeHead != nil {
			l.beforeHead()
		}
		if reverse {
			slices.Reverse(targets)
			slices.Reverse(tabs)
		}
		list := make([]*directCopy, len(targets))
		for i, t := range targets {
			t.desc = reverse
			list[i] = t.copy()
		}
		tp := newUnitPipe(h.conn)
		if err = tp.copyDirectAll(ctx, list); err != nil {
			h.err = err
			h.rollback(ctx)
			return
		}
		tp.release()
		for i, c := range list {
			tab := tabs[i]
			if !c.ok {
				// A committed row has a key of one: those creates go the usual way.
				if tab == TablePosts {
					h.posts = nil
				} else {
					h.pairs[tab-TableLikes] = nil
				}
				continue
			}
			h.rows[tab] += c.rows
		}
		h.mark(true)
		h.tp = tp
	}()
	return h
}

var errNoHead = errors.New("loader: no head start")

// watcher takes the next unit from ready while the writer writes one, and starts its head
// start as soon as it is planned.
type watcher struct {
	stopc  chan struct{}
	done   chan struct{} // the goroutine is done
	got    chan struct{} // closed once it has the next unit, or ready is closed
	next   *writeUnit
	closed bool // ready is closed
}

// watchNext starts the watcher of the unit after prev. Writer goroutine only.
func (l *Loader) watchNext(ctx context.Context, prev *writeUnit, ready <-chan *writeUnit) *watcher {
	hp := l.planHead(prev)
	l.headMu.Lock()
	l.ahead, l.aheadStopped = nil, false
	l.headMu.Unlock()
	wt := &watcher{stopc: make(chan struct{}), done: make(chan struct{}), got: make(chan struct{})}
	go func() {
		defer close(wt.done)
		select {
		case n := <-ready:
			if n == nil {
				wt.closed = true
			} else if hp != nil {
				l.headMu.Lock()
				if !l.aheadStopped {
					n.head = l.startHead(ctx, hp, n)
					l.ahead = n.head
				}
				l.headMu.Unlock()
			}
			wt.next = n
			close(wt.got)
		case <-wt.stopc:
		case <-ctx.Done():
		}
	}()
	return wt
}

// wait waits until the watcher has the next unit (or there is none).
func (wt *watcher) wait(ctx context.Context) error {
	select {
	case <-wt.got:
	case <-wt.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// stop ends the watcher and returns the unit it took, if any, and whether ready is closed.
func (wt *watcher) stop() (*writeUnit, bool) {
	close(wt.stopc)
	<-wt.done
	return wt.next, wt.closed
}

// stopAhead ends the head start of the next unit, and keeps another from starting, once an
// attempt of the unit being written failed: its retries need the main connection, and the
// keys the head start checked against (the written keys' filter and the pending rows, which a
// COMMIT that failed may have changed already) are no longer sure. Writer goroutine only.
func (l *Loader) stopAhead(ctx context.Context) {
	l.headMu.Lock()
	l.aheadStopped = true
	a := l.ahead
	l.headMu.Unlock()
	l.dropHead(ctx, a)
}

// rollback ends h's transaction, if any, and drops the connection when that fails.
func (h *headStart) rollback(ctx context.Context) {
	if h.conn == nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	tp := h.tp
	if tp == nil {
		tp = &txPipe{conn: h.conn}
	}
	if !tp.rollback(rctx) {
		_ = h.conn.Close(rctx)
	}
	h.tp = nil
}

// dropHead waits for h's goroutine and rolls its transaction back; the helper connection it
// opened is kept when it is sound.
func (l *Loader) dropHead(ctx context.Context, h *headStart) {
	if h == nil {
		return
	}
	<-h.done
	h.rollback(ctx)
	h.mark(false)
	if h.err == nil {
		h.err = errNoHead
	}
	l.adoptHelper(h)
}

// adoptHelper keeps the helper connection h's goroutine opened.
func (l *Loader) adoptHelper(h *headStart) {
	if h != nil && !h.onMain && h.conn != nil && h.conn != l.helper {
		if l.helper != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = l.helper.Close(ctx)
			cancel()
		}
		l.helper = h.conn
	}
}

// headSlots is the size of the table of touch counts a head start works out which creates are
// alone on their keys with: a count per slot of a key hash, so that two keys in one slot only
// keep creates from going ahead (about one in forty with the units of a 1M-event load).
const headSlots = 1 << 22

// headTargets returns the targets of next's creates that can go in ahead of it (the comment
// above).
func (l *Loader) headTargets(prev, next *unitPlan, blind [NumTables]bool, h *headStart) (targets []*target, tabs []Table) {
	if blind[TablePosts] && len(next.postRows) > 0 {
		var rows []*postState
		l.keysMu.RLock()
		for _, st := range next.postRows {
			if st.del || st.row == nil || l.seen.has(st.hash) {
				continue
			}
			if _, ok := prev.posts[st.row.URI]; ok {
				continue
			}
			rows = append(rows, st)
		}
		if len(rows) > 0 {
			h.posts = rows
			targets, tabs = append(targets, l.postTarget(rows, true)), append(tabs, TablePosts)
		}
		l.keysMu.RUnlock()
	}
	// Two head starts may work this out at once (the next unit's begins while this one's
	// COPYs): they take the table in turn.
	l.touchMu.Lock()
	defer l.touchMu.Unlock()
	if l.touched == nil {
		l.touched = make([]uint8, headSlots)
	}
	touched := l.touched
	touch := func(k keyHash, n uint8) {
		c := &touched[uint64(k)>>20&(headSlots-1)]
		*c = min(*c+n, 3)
	}
	once := func(k keyHash) bool { return touched[uint64(k)>>20&(headSlots-1)] == 1 }
	for i := range next.pairs {
		tab := TableLikes + Table(i)
		pl := &next.phases[i]
		if !blind[tab] || len(pl.rows) == 0 {
			continue
		}
		// How often each uri and pair is touched: by any op of prev (twice, so that one is too
		// many), by the ops of next (uris) and its creates (pairs). A create goes ahead when its
		// own op is the only one with its uri and its pair.
		clear(touched)
		for j := range prev.pairs[i] {
			op := &prev.pairs[i][j]
			touch(op.uh, 2)
			if !op.del {
				touch(op.ph, 2)
			}
		}
		for j := range next.pairs[i] {
			op := &next.pairs[i][j]
			touch(op.uh, 1)
			if !op.del {
				touch(op.ph, 1)
			}
		}
		var ops []*pairOp
		phases := 0
		l.keysMu.RLock()
		var pending map[keyHash]int32
		if l.pending != nil {
			pending = l.pending.hashes
		}
		for k := range pl.phases {
			rows, n := pl.phaseRows(k), len(ops)
			for _, x := range pl.byKey[k] {
				op := rows[x].op
				if op.doomed || !once(op.uh) || !once(op.ph) || l.seen.has(op.uh) || l.seen.has(op.ph) || pending[op.uh] > 0 || pending[op.ph] > 0 {
					continue
				}
				ops = append(ops, op)
			}
			if len(ops) > n {
				phases++
			}
		}
		l.keysMu.RUnlock()
		if len(ops) == 0 {
			continue
		}
		if phases > 1 {
			order := uriOrder(len(ops), func(j int) string { return ops[j].uri })
			sorted := make([]*pairOp, len(ops))
			for j, x := range order {
				sorted[j] = ops[x]
			}
			ops = sorted
		}
		h.pairs[i] = ops
		targets = append(targets, &target{table: tab.String(), cols: pairCopyCols[i], n: len(ops), keySorted: true,
			key: func(j int) (string, pairKey) { return ops[j].uri, ops[j].key },
			row: func(j int, r *copyRow) { pairRow(ops[j], r) }})
		tabs = append(tabs, tab)
	}
	return targets, tabs
}

// mark sets or clears the ahead mark of the creates h wrote: the unit's targets leave them out
// (kept), as rows of its own transaction.
func (h *headStart) mark(on bool) {
	for _, st := range h.posts {
		st.ahead = on
	}
	for i := range h.pairs {
		for _, op := range h.pairs[i] {
			op.ahead = on
		}
	}
}
