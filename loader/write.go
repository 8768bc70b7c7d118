package loader

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/backfill/backfill/decode"
	"github.com/backfill/backfill/spool"
	"github.com/jackc/pgx/v5"
)

// stageDDL creates the per-connection staging tables of the creates that cannot go straight
// into their tables (direct.go): TEMP (no WAL), no indexes, emptied at every commit or rollback.
var stageDDL = []string{
	`CREATE TEMP TABLE IF NOT EXISTS backfill_stage_users (did text, t timestamp) ON COMMIT DELETE ROWS`,
	`CREATE TEMP TABLE IF NOT EXISTS backfill_stage_posts (uri text, cid text, author_did text, text text, parent_uri text, root_uri text, embed jsonb, facets jsonb, tags jsonb, created_at timestamp, indexed_at timestamp) ON COMMIT DELETE ROWS`,
	`CREATE TEMP TABLE IF NOT EXISTS backfill_stage_likes (phase integer, pos bigint, uri text, a text, b text, created_at timestamp, indexed_at timestamp) ON COMMIT DELETE ROWS`,
	`CREATE TEMP TABLE IF NOT EXISTS backfill_stage_reposts (phase integer, pos bigint, uri text, a text, b text, created_at timestamp, indexed_at timestamp) ON COMMIT DELETE ROWS`,
	`CREATE TEMP TABLE IF NOT EXISTS backfill_stage_follows (phase integer, pos bigint, uri text, a text, b text, created_at timestamp, indexed_at timestamp) ON COMMIT DELETE ROWS`,
	`CREATE TEMP TABLE IF NOT EXISTS backfill_stage_blocks (phase integer, pos bigint, uri text, a text, b text, created_at timestamp, indexed_at timestamp) ON COMMIT DELETE ROWS`,
}

// pairColumns are the pair columns of each pair table, in Table order from TableLikes.
var pairColumns = [numPairTables][2]string{
	{"user_did", "post_uri"},
	{"user_did", "post_uri"},
	{"follower_did", "following_did"},
	{"blocker_did", "blocked_did"},
}

var pairStageCols = []string{"phase", "pos", "uri", "a", "b", "created_at", "indexed_at"}

// pairCopyCols are the columns a direct COPY into each pair table fills, in Table order from
// TableLikes.
var pairCopyCols = func() (c [numPairTables][]string) {
	for i, p := range pairColumns {
		c[i] = []string{"uri", p[0], p[1], "created_at", "indexed_at"}
	}
	return c
}()

// pairRow encodes a pair table's create for a direct COPY (pairCopyCols).
func pairRow(op *pairOp, r *copyRow) {
	r.start(5)
	r.text(op.uri)
	r.text(op.key.a)
	r.text(op.key.b)
	r.timestamp(op.created)
	r.timestamp(op.indexed)
}

// writeUnit is a decoded and planned unit on its way to the database.
type writeUnit struct {
	relay  string
	segs   []spool.SegmentInfo
	plan   *unitPlan
	weight int64      // job.weight, given back when the writer takes the unit
	head   *headStart // its head start (head.go), nil when none
}

// txResult is what a committed transaction did.
type txResult struct {
	rows       [NumTables]RowCount
	phases     [numPairTables]int
	pending    *pendingChange // what the unit did to the pending rows (pending.go)
	pendingLog int            // rows of backfill_pending's log after it
}

// rowsJSON renders row counts by table name for backfill_segments.
func (r *txResult) rowsJSON() []byte {
	m := map[string]RowCount{}
	for t := Table(0); t < NumTables; t++ {
		if r.rows[t].total() > 0 {
			m[t.String()] = r.rows[t]
		}
	}
	b, _ := json.Marshal(m)
	return b
}

func reasonsJSON(m map[decode.Reason]int64) []byte {
	if m == nil {
		m = map[decode.Reason]int64{}
	}
	b, _ := json.Marshal(m)
	return b
}

func nullableTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// userCols are the columns a direct COPY into users fills.
var userCols = []string{"did", "handle", "display_name", "description", "avatar_url", "banner_url", "pinned_post", "profile_record", "created_at", "indexed_at"}

// postCols are the columns of posts and of its staging table that the loader fills.
var postCols = []string{"uri", "cid", "author_did", "text", "parent_uri", "root_uri", "embed", "facets", "tags", "created_at", "indexed_at"}

// attempt runs one transaction for w. On attempts after the first it first checks whether an
// earlier attempt committed after all (a lost COMMIT reply), and reports done in that case.
//
// Round trips of a typical unit: one batch (BEGIN, settings, the reads the plan needs, the
// updates and deletes that precede every create), one query that COPYs the creates of every
// table straight into it (direct.go), and one batch (bookkeeping and COMMIT). Creates that
// cannot go straight in are COPYed into staging tables and inserted from there. Those inserts
// skip rows whose keys exist with an anti-join (NOT EXISTS on each unique key) when the staged
// rows of the statement are known to be pairwise distinct on those keys: unlike ON CONFLICT DO
// NOTHING this needs no speculative insertion (a token, then a confirmation WAL record per
// row), which measured 10-15% cheaper on the largest statements. With safe set, or for a table
// with unique indexes beyond SCHEMA.md's, or for a phase whose creates may collide with each
// other, ON CONFLICT DO NOTHING is used instead. A row committed by another session between the
// anti-join's snapshot and its insert fails the statement with a unique violation; the unit is
// then retried with safe set, which also turns the direct COPY off.
//
// With h (the first attempt only), the unit goes on in the transaction of its head start
// (head.go), on h's connection.
func (l *Loader) attempt(ctx context.Context, conn *pgx.Conn, w *writeUnit, n int, safe bool, h *headStart) (res txResult, done bool, err error) {
	if h != nil {
		conn = h.conn
	}
	if l.pendingStale {
		// An earlier attempt's COMMIT failed after the unit's change went into l.pending: the
		// set is the one the database has, which that COMMIT may or may not have changed (a
		// lost reply). Read here, before the check of recorded segments, it is right whether
		// the unit turns out done or is written again.
		l.keysMu.Lock()
		l.pending, l.pendingLog, err = readPending(ctx, conn)
		l.keysMu.Unlock()
		if err != nil {
			return res, false, fmt.Errorf("read pending rows: %w", err)
		}
		l.pendingStale = false
	}
	var tp *txPipe
	if h != nil {
		tp, h.tp = h.tp, nil
		l.pre = h
		defer func() { l.pre = nil }()
		for t, n := range h.rows {
			res.rows[t].Inserted += n
		}
	} else {
		tp = newUnitPipe(conn)
	}
	defer func() {
		if err != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if !tp.rollback(rctx) {
				// The connection state is unknown: drop it, the next attempt reconnects.
				_ = conn.Close(rctx)
			}
		}
	}()
	p := w.plan

	if n > 1 {
		firsts, lasts, sums := make([]int64, len(w.segs)), make([]int64, len(w.segs)), make([]int64, len(w.segs))
		for i, s := range w.segs {
			firsts[i], lasts[i], sums[i] = s.FirstSeq, s.LastSeq, int64(s.Checksum)
		}
		var have int
		tp.queue(`SELECT count(*) FROM backfill_segments WHERE relay = $1 AND (first_seq, last_seq, checksum) IN (SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]))`,
			w.relay, firsts, lasts, sums).QueryRow(func(row pgx.Row) error { return row.Scan(&have) })
		if err = tp.flush(ctx); err != nil {
			return res, false, fmt.Errorf("check segments: %w", err)
		}
		if have == len(w.segs) {
			if !tp.rollback(ctx) {
				return res, false, errors.New("loader: roll back after a lost commit reply failed")
			}
			return res, true, nil
		}
		if have != 0 {
			return res, false, fmt.Errorf("loader: %d of %d segments of one transaction are recorded as loaded", have, len(w.segs))
		}
	}

	// Users this run already ensured (committed) exist: only the others need the ensure. Those
	// that do not exist go straight into users with their final handle and profile; the
	// handles and profiles of the others are set now, before anything else touches users
	// (sequential application ensures a user before it sets anything on it).
	users := p.users
	if l.known.n > 0 {
		users = make([]userRow, 0, len(p.users))
		for _, u := range p.users {
			if !l.known.has(u.did) {
				users = append(users, u)
			}
		}
	}
	var userT *target
	if len(users) > 0 && tp.canCopyDirect() {
		if mode := l.directMode(TableUsers, safe); mode != modeStaging {
			userT = l.userTarget(p, users, mode == modeBlind)
			if mode == modeProbe {
				userT.queueProbe(tp, nil)
			}
		}
	}
	if userT != nil || len(users) == 0 {
		l.queueUserUpdates(tp, p, nil, &res.rows[TableUsers])
	}
	if len(p.accountList) > 0 {
		accounts := p.accountList
		dids, statuses := make([]string, len(accounts)), make([]string, len(accounts))
		actives, seqs, times := make([]bool, len(accounts)), make([]int64, len(accounts)), make([]time.Time, len(accounts))
		for i, a := range accounts {
			dids[i], actives[i], statuses[i], seqs[i], times[i] = a.did, a.active, a.status, a.seq, a.t
		}
		tp.queueCount(&res.rows[TableAccounts].Updated, `INSERT INTO backfill_accounts (did, active, status, seq, time) SELECT * FROM unnest($1::text[], $2::boolean[], $3::text[], $4::bigint[], $5::timestamp[]) ON CONFLICT (did) DO UPDATE SET active = EXCLUDED.active, status = EXCLUDED.status, seq = EXCLUDED.seq, time = EXCLUDED.time`,
			dids, actives, statuses, seqs, times)
	}

	// Pending rows that a create of the unit meets are written before any other statement on
	// the pair tables (pending.go); the creates that meet them are probed (seen). Which they are
	// is found while the server runs the statements above (users and accounts: 15-20 ms a unit
	// of four segments), where it kept it waiting 6-11 ms a unit.
	var ch *pendingChange
	if err = tp.flushWith(ctx, func() {
		ch = l.pending.touch(p)
		if ch == nil {
			ch = &pendingChange{}
		}
		ch.queueMaterialize(tp, &res.rows)
		l.keysMu.Lock()
		for i := range ch.materialize {
			for _, r := range ch.materialize[i] {
				l.seen.add(r.uh)
				l.seen.add(r.ph)
			}
		}
		l.keysMu.Unlock()
	}); err != nil {
		return res, false, fmt.Errorf("update users and accounts: %w", err)
	}
	res.pending = ch

	// Pairs of pre-existing rows that could change the phase cuts made by the planner: read
	// here for the uris that the first phase does not delete, returned by its deletes for the
	// others.
	existing := [numPairTables]map[string]pairKey{}
	readPairs := func(m map[string]pairKey, only map[string]bool, n *int64) func(pgx.Rows) error {
		return func(rows pgx.Rows) error {
			for rows.Next() {
				var uri string
				var k pairKey
				if err := rows.Scan(&uri, &k.a, &k.b); err != nil {
					return err
				}
				if only == nil || only[uri] {
					m[uri] = k
				}
				if n != nil {
					*n++
				}
			}
			return rows.Err()
		}
	}
	for i := range p.pairs {
		if len(p.lookups[i]) == 0 {
			continue
		}
		existing[i] = map[string]pairKey{}
		if len(p.lateLookups[i]) > 0 {
			tp.queue(fmt.Sprintf("SELECT uri, %s, %s FROM %s WHERE uri = ANY($1)", pairColumns[i][0], pairColumns[i][1], (TableLikes+Table(i)).String()), p.lateLookups[i]).
				Query(readPairs(existing[i], nil, nil))
		}
	}

	// The deletes that come before every create: those of posts, and those of each pair
	// table's first phase. A pair table's cuts are the planner's until the pre-existing pairs
	// are read (in the same batch, before the deletes), so when they may change, the table's
	// deletes go after a savepoint of its own (backfill_cut_i) that undoes them, and the
	// statements after them, if a cut changes: the tables before it keep their deletes.
	var early [NumTables]RowCount
	var cut [numPairTables]bool // backfill_cut_i is taken before table i's deletes
	if len(p.postDeletes) > 0 {
		tp.queueCount(&early[TablePosts].Deleted, `DELETE FROM posts WHERE uri = ANY($1)`, p.postDeletes)
	}
	for i := range p.phases {
		d := ch.unwritten(i, p.phases[i].deletes[0])
		if len(d) == 0 {
			continue
		}
		tab := TableLikes + Table(i)
		if len(p.lookups[i]) == 0 {
			tp.queueCount(&early[tab].Deleted, fmt.Sprintf(`DELETE FROM %s WHERE uri = ANY($1)`, tab), d)
			continue
		}
		tp.savepointCut(i)
		cut[i] = true
		// The first deletes run before any create of the unit: they delete pre-existing rows.
		tp.queue(fmt.Sprintf(`DELETE FROM %s WHERE uri = ANY($1) RETURNING uri, %s, %s`, tab, pairColumns[i][0], pairColumns[i][1]), d).
			Query(readPairs(existing[i], p.lookups[i], &early[tab].Deleted))
	}

	// The creates that follow those deletes: posts, and each pair table's first phase. Probed
	// after the deletes (all of them when their table is backing off, else the suspects), in a
	// batch of their own: the targets are built while the server runs the statements above
	// (70-110 ms a unit of four segments), where they kept it waiting 5-11 ms a unit.
	var postT *target
	phases := p.phases
	var pairMode [numPairTables]directMode
	var pairT [numPairTables]*target
	buildTargets := func() {
		if len(p.postRows) > 0 && tp.canCopyDirect() {
			if mode := l.directMode(TablePosts, safe); mode != modeStaging {
				postT = l.postTarget(p.postRows, mode == modeBlind)
				if mode == modeProbe {
					postT.queueProbe(tp, nil)
				} else {
					postT.queueSuspects(tp)
				}
			}
		}
		for i := range phases {
			if len(phases[i].rows) > 0 {
				pairMode[i] = l.directMode(TableLikes+Table(i), safe)
			}
			if pairMode[i] != modeStaging && tp.canCopyDirect() {
				pairT[i] = l.pairTarget(TableLikes+Table(i), &phases[i], 0, pairMode[i] == modeBlind)
				switch {
				case pairT[i] == nil:
				case pairMode[i] == modeProbe:
					pairT[i].queueProbe(tp, nil)
				default:
					pairT[i].queueSuspects(tp)
				}
			}
		}
	}
	if err = tp.flushWith(ctx, buildTargets); err != nil {
		return res, false, fmt.Errorf("read, update and delete: %w", err)
	}
	if err = tp.flush(ctx); err != nil {
		return res, false, fmt.Errorf("probe creates: %w", err)
	}

	undo := -1 // the first pair table whose cut changed after its deletes were sent
	for i := range phases {
		if phases[i].needsRecut(existing[i]) {
			phases[i] = cutPhases(p.pairs[i], existing[i])
			// Without a savepoint, the table sent no deletes, and its new cut has none before
			// its first create either: more known pairs only cut earlier.
			if undo < 0 && cut[i] {
				undo = i
			}
			if pairMode[i] != modeStaging {
				pairT[i] = l.pairTarget(TableLikes+Table(i), &phases[i], 0, pairMode[i] == modeBlind)
			} else {
				pairT[i] = nil
			}
		}
		res.phases[i] = phases[i].phases
	}
	redo := NumTables // the deletes of this table and those after it are undone and sent again
	if undo >= 0 {
		// The deletes of the table whose cut changed may belong to later phases now: undo them
		// (and those of the tables after it) and send the first phase's. Only the probes of the
		// tables whose cut changed are void (applyDirect probes their new targets); the others
		// stand, as their tables get the same deletes again and nothing else.
		if err = tp.undoCut(ctx, undo); err != nil {
			return res, false, err
		}
		redo = TableLikes + Table(undo)
		for i := undo; i < len(phases); i++ {
			if d := ch.unwritten(i, phases[i].deletes[0]); len(d) > 0 {
				tab := TableLikes + Table(i)
				tp.queueCount(&res.rows[tab].Deleted, fmt.Sprintf(`DELETE FROM %s WHERE uri = ANY($1)`, tab), d)
			}
		}
	}
	for t := range redo {
		res.rows[t].Deleted += early[t].Deleted
	}

	// Straight into the tables, as far as they go.
	var targets []*target
	for _, t := range append([]*target{userT, postT}, pairT[:]...) {
		if t != nil {
			targets = append(targets, t)
		}
	}
	// Each unit goes over every table's indexes, more of them than shared_buffers may hold: every
	// other unit takes the tables in reverse, so that the first it writes are the last the unit
	// before wrote, still cached (7% fewer buffer reads in a 1M-event load into empty tables),
	// and writes each table's rows in descending key order, so that its sweep of the indexes
	// that follow the key starts where the last one ended (9% fewer index blocks read, 6% fewer
	// buffers the server process had to write out itself, in the same load).
	if l.reverse {
		slices.Reverse(targets)
	}
	for _, t := range targets {
		t.desc = l.reverse
	}
	if err = tp.applyDirect(ctx, targets); err != nil {
		return res, false, err
	}
	anti := func(table string) bool { return !safe && !l.schema.extraKeys[table] }

	// Users: what the COPY wrote, or staging.
	switch {
	case userT != nil && userT.ok:
		res.rows[TableUsers].Inserted += userT.rows
		for _, i := range userT.kept() {
			u := users[i]
			// What the updates would have counted on the row ensured with 'handle.invalid'.
			if h, ok := p.handles[u.did]; ok && h != "handle.invalid" {
				res.rows[TableUsers].Updated++
			}
			if p.profiles[u.did] != nil {
				res.rows[TableUsers].Updated++
			}
		}
	case userT != nil:
		// Another session wrote some of them since the probe: ensure them all, then set on the
		// rows the COPY was to write what it was to write.
		if err = l.ensureUsers(ctx, tp, users, anti("users"), &res.rows[TableUsers]); err != nil {
			return res, false, err
		}
		only := map[string]bool{}
		for _, i := range userT.kept() {
			only[users[i].did] = true
		}
		l.queueUserUpdates(tp, p, only, &res.rows[TableUsers])
	case len(users) > 0:
		if err = l.ensureUsers(ctx, tp, users, anti("users"), &res.rows[TableUsers]); err != nil {
			return res, false, err
		}
		l.queueUserUpdates(tp, p, nil, &res.rows[TableUsers])
	}
	if userT != nil {
		l.targetDone(TableUsers, userT)
	}

	// Posts: what the COPY wrote, or staging.
	if postT != nil {
		l.targetDone(TablePosts, postT)
		res.rows[TablePosts].Inserted += postT.rows
	}
	if len(p.postRows) > 0 && (postT == nil || !postT.ok) {
		if _, err = tp.copyRows(ctx, "backfill_stage_posts", postCols, len(p.postRows), postRow(p.postRows)); err != nil {
			return res, false, err
		}
		q := `INSERT INTO posts (uri, cid, author_did, text, parent_uri, root_uri, embed, facets, tags, created_at, indexed_at) SELECT s.uri, s.cid, s.author_did, s.text, s.parent_uri, s.root_uri, s.embed, s.facets, s.tags, s.created_at, s.indexed_at FROM backfill_stage_posts AS s`
		if anti("posts") {
			q += ` WHERE NOT EXISTS (SELECT 1 FROM posts AS t WHERE t.uri = s.uri)`
		} else {
			q += ` ON CONFLICT DO NOTHING`
		}
		tp.queueCount(&res.rows[TablePosts].Inserted, q)
	}

	// Pair tables: the rest of each, phase by phase.
	for i := range phases {
		if err = l.writePairs(ctx, tp, &phases[i], TableLikes+Table(i), safe, pairMode[i], pairT[i], &res.rows[TableLikes+Table(i)], &ch.added[i]); err != nil {
			return res, false, err
		}
	}

	tp.release()
	compact := pendingCompact
	if l.pendingCompact > 0 {
		compact = l.pendingCompact
	}
	res.pendingLog = ch.queueRecord(tp, l.pending, l.pendingLog, compact)
	for t, n := range p.elided {
		res.rows[t].Elided += n
	}
	if p.end.seq > p.start.seq {
		tp.queue(`INSERT INTO firehose_cursor (service, cursor, last_event_time, updated_at) VALUES ($1, $2, $3, now()) ON CONFLICT (service) DO UPDATE SET cursor = EXCLUDED.cursor, last_event_time = EXCLUDED.last_event_time, updated_at = now()`,
			l.cfg.Service, strconv.FormatInt(p.end.seq, 10), nullableTime(p.end.time))
		// Rows left out await deletes up to p.awaits (awaits.go), with this run's window and
		// collections, checked to be at least as wide as those of any earlier rows awaiting.
		a := awaiting{}
		if p.awaits > 0 {
			a = l.awaiting(p.awaits)
		}
		tp.queue(`INSERT INTO backfill_loader (relay, seq, event_time, updated_at, awaits_seq, awaits_since, awaits_until, awaits_collections) VALUES ($1, $2, $3, now(), $4, $5, $6, $7) `+
			`ON CONFLICT (relay) DO UPDATE SET seq = EXCLUDED.seq, event_time = EXCLUDED.event_time, updated_at = now(), awaits_seq = GREATEST(backfill_loader.awaits_seq, EXCLUDED.awaits_seq), `+
			`awaits_since = CASE WHEN EXCLUDED.awaits_seq > 0 THEN EXCLUDED.awaits_since ELSE backfill_loader.awaits_since END, `+
			`awaits_until = CASE WHEN EXCLUDED.awaits_seq > 0 THEN EXCLUDED.awaits_until ELSE backfill_loader.awaits_until END, `+
			`awaits_collections = CASE WHEN EXCLUDED.awaits_seq > 0 THEN EXCLUDED.awaits_collections ELSE backfill_loader.awaits_collections END`,
			w.relay, p.end.seq, nullableTime(p.end.time), a.seq, nullableTime(a.since), nullableTime(a.until), a.collections)
	}
	// rows_written is known once every counting statement ran; the segment rows and COMMIT go
	// in the last batch.
	if tp.counting {
		if err = tp.flush(ctx); err != nil {
			return res, false, fmt.Errorf("apply statements: %w", err)
		}
	}
	rowsJSON := res.rowsJSON()
	for i, s := range w.segs {
		c := &p.segCounts[i]
		skipped, repaired := c.split()
		tp.queue(`INSERT INTO backfill_segments (relay, first_seq, last_seq, checksum, name, frames, events, rows_written, skipped, repaired, batch_segments) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			w.relay, s.FirstSeq, s.LastSeq, int64(s.Checksum), s.Name, c.frames, c.eventCount(), rowsJSON, reasonsJSON(skipped), reasonsJSON(repaired), len(w.segs))
	}
	if l.beforeCommit != nil {
		if err = tp.flush(ctx); err != nil {
			return res, false, fmt.Errorf("record segments: %w", err)
		}
		if err = l.beforeCommit(ctx, conn); err != nil {
			return res, false, err
		}
	}
	if h != nil && !h.onMain {
		// On the helper: the main connection must still hold the loader lock, or another
		// loader may be loading (a lost lock fails the attempt, retried on a new main
		// connection, which takes the lock again). The main connection itself may be busy
		// with the next unit's head start: its server process is asked, by pid.
		tp.queue(fmt.Sprintf(`DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = %d AND classid = %d AND objid = %d AND objsubid = 1) THEN RAISE EXCEPTION 'loader: the main connection lost the loader lock' USING ERRCODE = '08006'; END IF; END$$`,
			l.mainPID, lockKey>>32, lockKey&0xffffffff))
	}
	tp.queue(`COMMIT`)
	// While the server commits, the filter of written keys takes the unit's (a unit that then
	// fails only makes suspects of its own creates when it is retried) and the pending rows
	// take its change (10-15 ms a unit the database waited for; a COMMIT that fails leaves them
	// stale, and the next attempt reads them again).
	if err = tp.flushWith(ctx, func() {
		l.keysMu.Lock()
		l.seen.addUnit(p)
		l.pendingStale = true
		l.pending.apply(ch)
		l.keysMu.Unlock()
		l.pendingLog = res.pendingLog
	}); err != nil {
		return res, false, fmt.Errorf("record segments and commit: %w", err)
	}
	l.pendingStale = false
	return res, false, nil
}

// newUnitPipe returns a pipe on conn with the BEGIN and the settings of a unit's transaction
// queued.
func newUnitPipe(conn *pgx.Conn) *txPipe {
	tp := newTxPipe(conn)
	// Every statement here finds its rows by key, and wants the index: staging tables have no
	// statistics, a hash or merge join would read a whole target table for a few rows, and on
	// tables that grew since they were last analyzed the planner takes a sequential scan that
	// compares each row with each of a few thousand uris of "uri = ANY($1)".
	tp.queue(`SET LOCAL enable_hashjoin = off`)
	tp.queue(`SET LOCAL enable_mergejoin = off`)
	tp.queue(`SET LOCAL enable_seqscan = off`)
	// The cost estimates of these statements pass jit_above_cost and parallel_setup_cost, but
	// compiling them or starting workers takes longer than running them.
	tp.queue(`SET LOCAL jit = off`)
	tp.queue(`SET LOCAL max_parallel_workers_per_gather = 0`)
	// A unit that begins ahead waits, idle in its transaction, while the unit before it is
	// written (head.go).
	tp.queue(`SET LOCAL idle_in_transaction_session_timeout = 0`)
	return tp
}

// targetDone records how the direct COPY of t into tab went.
func (l *Loader) targetDone(tab Table, t *target) {
	l.directDone(tab, t.wasBlind && !t.blindFailed, t.blindFailed, t.staging)
}

// userTarget returns the creates of the users that may not exist yet, with their final handle
// and profile.
func (l *Loader) userTarget(p *unitPlan, users []userRow, blind bool) *target {
	return &target{
		table: "users", cols: userCols, n: len(users), keySorted: true, // by the planner
		row: func(i int, r *copyRow) {
			u := users[i]
			r.start(10)
			r.text(u.did)
			if h, ok := p.handles[u.did]; ok {
				r.text(h)
			} else {
				r.text("handle.invalid")
			}
			if ps := p.profiles[u.did]; ps != nil {
				r.textPtr(ps.displayName)
				r.textPtr(ps.description)
				r.textPtr(ps.avatar)
				r.textPtr(ps.banner)
				r.jsonb(ps.pinned)
				r.jsonb(ps.record)
			} else {
				r.null()
				r.null()
				r.null()
				r.null()
				r.null()
				r.null()
			}
			r.timestamp(u.t)
			r.timestamp(u.t)
		},
		key:   func(i int) (string, pairKey) { return users[i].did, pairKey{} },
		probe: probeByKey("users", "did"),
		args: func(idx []int) []any {
			dids := make([]string, len(idx))
			for j, i := range idx {
				dids[j] = users[i].did
			}
			return []any{dids}
		},
		blind: blind, wasBlind: blind,
	}
}

// postRow encodes the rows of posts (and of its staging table).
func postRow(rows []*postState) func(i int, r *copyRow) {
	return func(i int, r *copyRow) {
		st := rows[i]
		pr := st.row
		created := pr.CreatedAt
		if created.IsZero() {
			created = st.indexed
		}
		r.start(11)
		r.text(pr.URI)
		r.text(pr.CID)
		r.text(pr.AuthorDID)
		r.text(pr.Text)
		r.textOrNull(pr.ParentURI)
		r.textOrNull(pr.RootURI)
		r.jsonb(pr.Embed)
		r.jsonb(pr.Facets)
		r.jsonb(pr.Tags)
		r.timestamp(created.UTC())
		r.timestamp(st.indexed)
	}
}

// postTarget returns the creates of posts.
func (l *Loader) postTarget(rows []*postState, blind bool) *target {
	t := &target{
		table: "posts", cols: postCols, n: len(rows), row: postRow(rows), keySorted: true, // by the planner
		key:   func(i int) (string, pairKey) { return rows[i].row.URI, pairKey{} },
		ahead: func(i int) bool { return rows[i].ahead },
		probe: probeByKey("posts", "uri"),
		args: func(idx []int) []any {
			uris := make([]string, len(idx))
			for j, i := range idx {
				uris[j] = rows[i].row.URI
			}
			return []any{uris}
		},
		blind: blind, wasBlind: blind,
	}
	for i, st := range rows {
		if l.seen.has(st.hash) {
			t.suspects = append(t.suspects, i)
		}
	}
	return t
}

// pairTarget returns the creates of phase k of a pair table, nil when there are none.
func (l *Loader) pairTarget(tab Table, pl *phasePlan, k int, blind bool) *target {
	rows := pl.phaseRows(k)
	if len(rows) == 0 {
		return nil
	}
	name := tab.String()
	cols := pairColumns[tab-TableLikes]
	// The suspects: creates whose uri or pair an earlier unit wrote, or an earlier phase of
	// this one (a create cut into a later phase by a delete between may meet the row of one
	// before the delete, which nothing deleted).
	var before map[keyHash]struct{}
	if k > 0 {
		before = map[keyHash]struct{}{}
		for _, r := range pl.rows {
			if r.phase >= int32(k) {
				break
			}
			before[r.op.uh], before[r.op.ph] = struct{}{}, struct{}{}
		}
	}
	var suspects []int
	// A doomed create is left out only when no later create of the unit has its pair (and none
	// has its uri: it is the last op there), so nothing later in the unit can meet it.
	var leave map[int]bool
	for i, r := range rows {
		_, uri := before[r.op.uh]
		_, pair := before[r.op.ph]
		if r.op.doomed && !l.pending.full() && pl.lastWithPair(r.op) {
			if leave == nil {
				leave = map[int]bool{}
			}
			leave[i] = true
			pair = true // probed, so that kept is exact for it
		}
		if uri || pair || l.seen.has(r.op.uh) || l.seen.has(r.op.ph) {
			suspects = append(suspects, i)
		}
	}
	var doomedFn func(int) bool
	if leave != nil {
		doomedFn = func(i int) bool { return leave[i] }
	}
	return &target{
		doomed:   doomedFn,
		suspects: suspects,
		pairs:    true,
		distinct: !pl.ordered[k],
		byKey:    pl.byKey[k],
		key:      func(i int) (string, pairKey) { return rows[i].op.uri, rows[i].op.key },
		ahead:    func(i int) bool { return rows[i].op.ahead },
		hashes:   func(i int) (keyHash, keyHash) { return rows[i].op.uh, rows[i].op.ph },
		table:    name, cols: pairCopyCols[tab-TableLikes], n: len(rows),
		row:   func(j int, r *copyRow) { pairRow(rows[j].op, r) },
		probe: probePairs(name, cols),
		args: func(idx []int) []any {
			uris, as, bs := make([]string, len(idx)), make([]string, len(idx)), make([]string, len(idx))
			for j, i := range idx {
				uris[j], as[j], bs[j] = rows[i].op.uri, rows[i].op.key.a, rows[i].op.key.b
			}
			return []any{uris, as, bs}
		},
		blind: blind, wasBlind: blind,
	}
}

// queueUserUpdates queues the profile and handle updates of the unit's users (of those in only,
// when it is not nil), counting the rows they change into rc.
func (l *Loader) queueUserUpdates(tp *txPipe, p *unitPlan, only map[string]bool, rc *RowCount) {
	var profiles []*profileSet
	for _, r := range p.profileList {
		if only == nil || only[r.did] {
			profiles = append(profiles, r)
		}
	}
	if len(profiles) > 0 {
		dids := make([]string, len(profiles))
		names, descs, avatars, banners := make([]*string, len(profiles)), make([]*string, len(profiles)), make([]*string, len(profiles)), make([]*string, len(profiles))
		pinned, records := make([][]byte, len(profiles)), make([][]byte, len(profiles))
		for i, r := range profiles {
			dids[i], names[i], descs[i], avatars[i], banners[i], pinned[i], records[i] = r.did, r.displayName, r.description, r.avatar, r.banner, r.pinned, r.record
		}
		tp.queueCount(&rc.Updated, `UPDATE users AS u SET display_name = s.display_name, description = s.description, avatar_url = s.avatar_url, banner_url = s.banner_url, pinned_post = s.pinned_post, profile_record = s.profile_record
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) AS s(did, display_name, description, avatar_url, banner_url, pinned_post, profile_record) WHERE u.did = s.did`,
			dids, names, descs, avatars, banners, pinned, records)
	}
	var dids, handles []string
	for _, did := range p.handleDIDs {
		if only == nil || only[did] {
			dids = append(dids, did)
			handles = append(handles, p.handles[did])
		}
	}
	if len(dids) > 0 {
		tp.queueCount(&rc.Updated, `UPDATE users AS u SET handle = s.handle FROM unnest($1::text[], $2::text[]) AS s(did, handle) WHERE u.did = s.did AND u.handle IS DISTINCT FROM s.handle`,
			dids, handles)
	}
}

// ensureUsers ensures users through staging: the rows that do not exist get 'handle.invalid'
// and their first naming event's time.
func (l *Loader) ensureUsers(ctx context.Context, tp *txPipe, users []userRow, anti bool, rc *RowCount) error {
	if _, err := tp.copyRows(ctx, "backfill_stage_users", []string{"did", "t"}, len(users), func(i int, r *copyRow) {
		r.start(2)
		r.text(users[i].did)
		r.timestamp(users[i].t)
	}); err != nil {
		return err
	}
	q := `INSERT INTO users (did, handle, created_at, indexed_at) SELECT s.did, 'handle.invalid', s.t, s.t FROM backfill_stage_users AS s`
	if anti {
		q += ` WHERE NOT EXISTS (SELECT 1 FROM users AS u WHERE u.did = s.did)`
	} else {
		q += ` ON CONFLICT DO NOTHING`
	}
	tp.queueCount(&rc.Inserted, q)
	return nil
}

// phaseRows returns the creates of phase k; pl.rows are in pos order, so phase by phase.
func (pl *phasePlan) phaseRows(k int) []phasedRow {
	cmpPhase := func(r phasedRow, k int32) int { return cmp.Compare(r.phase, k) }
	lo, _ := slices.BinarySearchFunc(pl.rows, int32(k), cmpPhase)
	hi, _ := slices.BinarySearchFunc(pl.rows, int32(k+1), cmpPhase)
	return pl.rows[lo:hi]
}

// writePairs applies the rest of one pair table's phases, after its first phase's deletes and,
// when first is not nil, the direct COPY of the first phase's creates: each later phase's
// deletes, then each phase's creates, straight into the table as mode says (the creates that
// collide with each other resolved in memory, target.kept), and through staging otherwise. On
// the staging path, a phase whose creates collide (ordered) is inserted ORDER BY pos with ON
// CONFLICT DO NOTHING.
func (l *Loader) writePairs(ctx context.Context, tp *txPipe, pl *phasePlan, tab Table, safe bool, mode directMode, first *target, rc *RowCount, left *[]pairOp) error {
	name := tab.String()
	cols := pairColumns[tab-TableLikes]
	var tried bool
	var sum target // the outcome of the table's direct COPYs
	note := func(t *target) {
		tried = true
		sum.wasBlind = sum.wasBlind || t.wasBlind
		sum.blindFailed = sum.blindFailed || t.blindFailed
		sum.staging = sum.staging || t.staging
		if t.blindFailed {
			mode = modeProbe // for the later phases
		}
	}
	staged := false
	for k := range pl.phases {
		if k > 0 && len(pl.deletes[k]) > 0 {
			tp.queueCount(&rc.Deleted, fmt.Sprintf(`DELETE FROM %s WHERE uri = ANY($1)`, name), pl.deletes[k])
		}
		rows := pl.phaseRows(k)
		if len(rows) == 0 {
			continue
		}
		t := first
		if k > 0 {
			t = nil
			if mode != modeStaging && tp.canCopyDirect() {
				t = l.pairTarget(tab, pl, k, mode == modeBlind)
				if err := tp.applyDirect(ctx, []*target{t}); err != nil {
					return err
				}
			}
		}
		if t != nil {
			note(t)
			if t.ok {
				rc.Inserted += t.rows
				rows := pl.phaseRows(k)
				for _, i := range t.left {
					*left = append(*left, *rows[i].op)
				}
				rc.Elided += int64(len(t.left))
				continue
			}
		}
		if !staged {
			// The rows of this phase and the later ones; each insert picks its phase's.
			rest := pl.rows[slices.IndexFunc(pl.rows, func(r phasedRow) bool { return r.phase >= int32(k) }):]
			if _, err := tp.copyRows(ctx, "backfill_stage_"+name, pairStageCols, len(rest), func(j int, r *copyRow) {
				pr := rest[j]
				r.start(7)
				r.int4(pr.phase)
				r.int8(pr.op.pos)
				r.text(pr.op.uri)
				r.text(pr.op.key.a)
				r.text(pr.op.key.b)
				r.timestamp(pr.op.created)
				r.timestamp(pr.op.indexed)
			}); err != nil {
				return err
			}
			staged = true
		}
		q := fmt.Sprintf(`INSERT INTO %s (uri, %s, %s, created_at, indexed_at) SELECT s.uri, s.a, s.b, s.created_at, s.indexed_at FROM backfill_stage_%s AS s`, name, cols[0], cols[1], name)
		var where []string
		var args []any
		if pl.phases > 1 {
			where = append(where, `s.phase = $1`)
			args = append(args, int32(k))
		}
		extra := l.schema.extraKeys[name]
		// Unordered phases hold creates pairwise distinct on uri and pair (phase.go).
		useAnti := !safe && !extra && !pl.ordered[k]
		if useAnti {
			where = append(where,
				fmt.Sprintf(`NOT EXISTS (SELECT 1 FROM %s AS t WHERE t.uri = s.uri)`, name),
				fmt.Sprintf(`NOT EXISTS (SELECT 1 FROM %s AS t WHERE t.%s = s.a AND t.%s = s.b)`, name, cols[0], cols[1]))
		}
		if len(where) > 0 {
			q += ` WHERE ` + strings.Join(where, ` AND `)
		}
		if pl.ordered[k] || extra {
			// Creates that may collide with each other (on SCHEMA.md's keys or on the table's
			// own): the first in seq order wins, as in sequential application.
			q += ` ORDER BY s.pos`
		}
		if !useAnti {
			q += ` ON CONFLICT DO NOTHING`
		}
		tp.queueCount(&rc.Inserted, q, args...)
	}
	if tried {
		l.targetDone(tab, &sum)
	}
	return nil
}
