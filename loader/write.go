package loader

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/backfill/backfill/decode"
	"github.com/backfill/backfill/spool"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// stageDDL creates the per-connection staging tables: TEMP (no WAL), no indexes, emptied at
// every commit or rollback.
var stageDDL = []string{
	`CREATE TEMP TABLE IF NOT EXISTS backfill_stage_users (did text, t timestamp) ON COMMIT DELETE ROWS`,
	`CREATE TEMP TABLE IF NOT EXISTS backfill_stage_profiles (did text, display_name text, description text, avatar_url text, banner_url text, pinned_post jsonb, profile_record jsonb) ON COMMIT DELETE ROWS`,
	`CREATE TEMP TABLE IF NOT EXISTS backfill_stage_handles (did text, handle text) ON COMMIT DELETE ROWS`,
	`CREATE TEMP TABLE IF NOT EXISTS backfill_stage_accounts (did text, active boolean, status text, seq bigint, t timestamp) ON COMMIT DELETE ROWS`,
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

// writeUnit is a decoded and planned unit on its way to the database.
type writeUnit struct {
	relay string
	segs  []spool.SegmentInfo
	plan  *unitPlan
}

// txResult is what a committed transaction did.
type txResult struct {
	rows   [NumTables]RowCount
	phases [numPairTables]int
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

// nullable returns nil for an empty string so it is stored as NULL.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullableJSON(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

func nullableTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// copyRows COPYs n rows into a staging table; row fills vals for row i.
func copyRows(ctx context.Context, tx pgx.Tx, table string, cols []string, n int, row func(i int, vals []any)) error {
	if n == 0 {
		return nil
	}
	vals := make([]any, len(cols))
	i := 0
	_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromFunc(func() ([]any, error) {
		if i >= n {
			return nil, nil
		}
		row(i, vals)
		i++
		return vals, nil
	}))
	if err != nil {
		return fmt.Errorf("copy into %s: %w", table, err)
	}
	return nil
}

// attempt runs one transaction for w. On attempts after the first it first checks whether an
// earlier attempt committed after all (a lost COMMIT reply), and reports done in that case.
//
// Inserts skip rows whose keys exist with an anti-join (NOT EXISTS on each unique key) when the
// staged rows of the statement are known to be pairwise distinct on those keys: unlike ON
// CONFLICT DO NOTHING this needs no speculative insertion (a token, then a confirmation WAL
// record per row), which measured 10-15% cheaper on the largest statements and made them
// about as fast as COPY into the same indexed table. With safe set, or for a table with
// unique indexes beyond SCHEMA.md's, or for a phase whose creates may collide with each other,
// ON CONFLICT DO NOTHING is used instead. A row committed by another session between the
// anti-join's snapshot and its insert fails the statement with a unique violation; the unit is
// then retried with safe set.
func (l *Loader) attempt(ctx context.Context, conn *pgx.Conn, w *writeUnit, n int, safe bool) (res txResult, done bool, err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return res, false, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if rerr := tx.Rollback(rctx); rerr != nil {
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
		err = tx.QueryRow(ctx, `SELECT count(*) FROM backfill_segments WHERE relay = $1 AND (first_seq, last_seq, checksum) IN (SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]))`,
			w.relay, firsts, lasts, sums).Scan(&have)
		if err != nil {
			return res, false, fmt.Errorf("check segments: %w", err)
		}
		if have == len(w.segs) {
			return res, true, tx.Rollback(ctx)
		}
		if have != 0 {
			return res, false, fmt.Errorf("loader: %d of %d segments of one transaction are recorded as loaded", have, len(w.segs))
		}
	}

	// Pairs of pre-existing rows that the phase cut needs: one query per table, pipelined.
	// Joins against staging probe the target's indexes row by row: staging tables have no
	// statistics, and a hash or merge join would read a whole target table for a few rows.
	var lookups [numPairTables][]string
	existing := [numPairTables]map[string]pairKey{}
	b := &pgx.Batch{}
	b.Queue(`SET LOCAL enable_hashjoin = off`)
	b.Queue(`SET LOCAL enable_mergejoin = off`)
	// The cost estimates of these statements pass jit_above_cost, but compiling them takes longer
	// than running them.
	b.Queue(`SET LOCAL jit = off`)
	for i := range p.pairs {
		lookups[i] = lookupURIs(p.pairs[i])
		existing[i] = map[string]pairKey{}
		if len(lookups[i]) == 0 {
			continue
		}
		m := existing[i]
		b.Queue(fmt.Sprintf("SELECT uri, %s, %s FROM %s WHERE uri = ANY($1)", pairColumns[i][0], pairColumns[i][1], (TableLikes+Table(i)).String()), lookups[i]).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var uri string
					var k pairKey
					if err := rows.Scan(&uri, &k.a, &k.b); err != nil {
						return err
					}
					m[uri] = k
				}
				return rows.Err()
			})
	}
	if err = tx.SendBatch(ctx, b).Close(); err != nil {
		return res, false, fmt.Errorf("read existing pairs: %w", err)
	}
	var phases [numPairTables]phasePlan
	for i := range p.pairs {
		phases[i] = cutPhases(p.pairs[i], existing[i])
		res.phases[i] = phases[i].phases
	}

	// Staging.
	// Users this run already ensured (committed) exist: only the others need the ensure.
	users := p.users
	if l.known.n > 0 {
		users = make([]userRow, 0, len(p.users))
		for _, u := range p.users {
			if !l.known.has(u.did) {
				users = append(users, u)
			}
		}
	}
	if err = copyRows(ctx, tx, "backfill_stage_users", []string{"did", "t"}, len(users), func(i int, v []any) {
		v[0], v[1] = users[i].did, users[i].t
	}); err != nil {
		return res, false, err
	}
	profiles := sortedValues(p.profiles)
	if err = copyRows(ctx, tx, "backfill_stage_profiles", []string{"did", "display_name", "description", "avatar_url", "banner_url", "pinned_post", "profile_record"}, len(profiles), func(i int, v []any) {
		r := profiles[i]
		v[0], v[1], v[2], v[3], v[4], v[5], v[6] = r.did, r.displayName, r.description, r.avatar, r.banner, nullableJSON(r.pinned), nullableJSON(r.record)
	}); err != nil {
		return res, false, err
	}
	handleDIDs := sortedKeys(p.handles)
	if err = copyRows(ctx, tx, "backfill_stage_handles", []string{"did", "handle"}, len(handleDIDs), func(i int, v []any) {
		v[0], v[1] = handleDIDs[i], p.handles[handleDIDs[i]]
	}); err != nil {
		return res, false, err
	}
	accounts := sortedValues(p.accounts)
	if err = copyRows(ctx, tx, "backfill_stage_accounts", []string{"did", "active", "status", "seq", "t"}, len(accounts), func(i int, v []any) {
		a := accounts[i]
		v[0], v[1], v[2], v[3], v[4] = a.did, a.active, a.status, a.seq, a.t
	}); err != nil {
		return res, false, err
	}
	var postDeletes []string
	var postRows []*postState
	for _, uri := range p.postURIs {
		st := p.posts[uri]
		if st.del {
			postDeletes = append(postDeletes, uri)
		}
		if st.row != nil {
			postRows = append(postRows, st)
		}
	}
	if err = copyRows(ctx, tx, "backfill_stage_posts", []string{"uri", "cid", "author_did", "text", "parent_uri", "root_uri", "embed", "facets", "tags", "created_at", "indexed_at"}, len(postRows), func(i int, v []any) {
		st := postRows[i]
		r := st.row
		created := r.CreatedAt
		if created.IsZero() {
			created = st.indexed
		}
		v[0], v[1], v[2], v[3], v[4], v[5] = r.URI, r.CID, r.AuthorDID, r.Text, nullable(r.ParentURI), nullable(r.RootURI)
		v[6], v[7], v[8], v[9], v[10] = nullableJSON(r.Embed), nullableJSON(r.Facets), r.Tags, created.UTC(), st.indexed
	}); err != nil {
		return res, false, err
	}
	for i := range phases {
		rows := phases[i].rows
		if err = copyRows(ctx, tx, "backfill_stage_"+(TableLikes+Table(i)).String(), pairStageCols, len(rows), func(j int, v []any) {
			r := rows[j]
			v[0], v[1], v[2], v[3], v[4], v[5], v[6] = r.phase, r.op.pos, r.op.uri, r.op.key.a, r.op.key.b, r.op.created, r.op.indexed
		}); err != nil {
			return res, false, err
		}
	}

	// Set-based statements, pipelined in one round trip, in the order sequential application
	// needs: users are ensured before profiles and handles are set on them.
	b = &pgx.Batch{}
	count := func(c *int64) func(pgconn.CommandTag) error {
		return func(ct pgconn.CommandTag) error { *c += ct.RowsAffected(); return nil }
	}
	anti := func(table string) bool { return !safe && !l.schema.extraKeys[table] }
	if len(users) > 0 {
		q := `INSERT INTO users (did, handle, created_at, indexed_at) SELECT s.did, 'handle.invalid', s.t, s.t FROM backfill_stage_users AS s`
		if anti("users") {
			q += ` WHERE NOT EXISTS (SELECT 1 FROM users AS u WHERE u.did = s.did)`
		} else {
			q += ` ON CONFLICT DO NOTHING`
		}
		b.Queue(q).Exec(count(&res.rows[TableUsers].Inserted))
	}
	if len(profiles) > 0 {
		b.Queue(`UPDATE users AS u SET display_name = s.display_name, description = s.description, avatar_url = s.avatar_url, banner_url = s.banner_url, pinned_post = s.pinned_post, profile_record = s.profile_record FROM backfill_stage_profiles AS s WHERE u.did = s.did`).
			Exec(count(&res.rows[TableUsers].Updated))
	}
	if len(handleDIDs) > 0 {
		b.Queue(`UPDATE users AS u SET handle = s.handle FROM backfill_stage_handles AS s WHERE u.did = s.did AND u.handle IS DISTINCT FROM s.handle`).
			Exec(count(&res.rows[TableUsers].Updated))
	}
	if len(accounts) > 0 {
		b.Queue(`INSERT INTO backfill_accounts (did, active, status, seq, time) SELECT did, active, status, seq, t FROM backfill_stage_accounts ON CONFLICT (did) DO UPDATE SET active = EXCLUDED.active, status = EXCLUDED.status, seq = EXCLUDED.seq, time = EXCLUDED.time`).
			Exec(count(&res.rows[TableAccounts].Updated))
	}
	if len(postDeletes) > 0 {
		b.Queue(`DELETE FROM posts WHERE uri = ANY($1)`, postDeletes).Exec(count(&res.rows[TablePosts].Deleted))
	}
	if len(postRows) > 0 {
		// Each uri appears once (collapsed by uri): no ORDER BY needed, and an anti-join is exact.
		q := `INSERT INTO posts (uri, cid, author_did, text, parent_uri, root_uri, embed, facets, tags, created_at, indexed_at) SELECT s.uri, s.cid, s.author_did, s.text, s.parent_uri, s.root_uri, s.embed, s.facets, s.tags, s.created_at, s.indexed_at FROM backfill_stage_posts AS s`
		if anti("posts") {
			q += ` WHERE NOT EXISTS (SELECT 1 FROM posts AS t WHERE t.uri = s.uri)`
		} else {
			q += ` ON CONFLICT DO NOTHING`
		}
		b.Queue(q).Exec(count(&res.rows[TablePosts].Inserted))
	}
	for i := range phases {
		pl := &phases[i]
		tab := TableLikes + Table(i)
		name := tab.String()
		var perPhase []int
		if len(pl.rows) > 0 {
			perPhase = make([]int, pl.phases)
			for _, r := range pl.rows {
				perPhase[r.phase]++
			}
		}
		for k := 0; k < pl.phases; k++ {
			if len(pl.deletes[k]) > 0 {
				b.Queue(fmt.Sprintf(`DELETE FROM %s WHERE uri = ANY($1)`, name), pl.deletes[k]).Exec(count(&res.rows[tab].Deleted))
			}
			if perPhase == nil || perPhase[k] == 0 {
				continue
			}
			ca, cb := pairColumns[i][0], pairColumns[i][1]
			q := fmt.Sprintf(`INSERT INTO %s (uri, %s, %s, created_at, indexed_at) SELECT s.uri, s.a, s.b, s.created_at, s.indexed_at FROM backfill_stage_%s AS s`, name, ca, cb, name)
			var where []string
			var args []any
			if pl.phases > 1 {
				where = append(where, `s.phase = $1`)
				args = append(args, int32(k))
			}
			// Unordered phases hold creates pairwise distinct on uri and pair (phase.go).
			useAnti := anti(name) && !pl.ordered[k]
			if useAnti {
				where = append(where,
					fmt.Sprintf(`NOT EXISTS (SELECT 1 FROM %s AS t WHERE t.uri = s.uri)`, name),
					fmt.Sprintf(`NOT EXISTS (SELECT 1 FROM %s AS t WHERE t.%s = s.a AND t.%s = s.b)`, name, ca, cb))
			}
			if len(where) > 0 {
				q += ` WHERE ` + strings.Join(where, ` AND `)
			}
			if pl.ordered[k] {
				q += ` ORDER BY s.pos`
			}
			if !useAnti {
				q += ` ON CONFLICT DO NOTHING`
			}
			b.Queue(q, args...).Exec(count(&res.rows[tab].Inserted))
		}
	}
	if p.end.seq > p.start.seq {
		b.Queue(`INSERT INTO firehose_cursor (service, cursor, last_event_time, updated_at) VALUES ($1, $2, $3, now()) ON CONFLICT (service) DO UPDATE SET cursor = EXCLUDED.cursor, last_event_time = EXCLUDED.last_event_time, updated_at = now()`,
			l.cfg.Service, strconv.FormatInt(p.end.seq, 10), nullableTime(p.end.time))
		b.Queue(`INSERT INTO backfill_loader (relay, seq, event_time, updated_at) VALUES ($1, $2, $3, now()) ON CONFLICT (relay) DO UPDATE SET seq = EXCLUDED.seq, event_time = EXCLUDED.event_time, updated_at = now()`,
			w.relay, p.end.seq, nullableTime(p.end.time))
	}
	// rows_written is filled after the batch ran, so the segment rows go into a second batch.
	if err = tx.SendBatch(ctx, b).Close(); err != nil {
		return res, false, fmt.Errorf("apply staged rows: %w", err)
	}
	b = &pgx.Batch{}
	rowsJSON := res.rowsJSON()
	for i, s := range w.segs {
		c := &p.segCounts[i]
		skipped, repaired := c.split()
		b.Queue(`INSERT INTO backfill_segments (relay, first_seq, last_seq, checksum, name, frames, events, rows_written, skipped, repaired, batch_segments) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			w.relay, s.FirstSeq, s.LastSeq, int64(s.Checksum), s.Name, c.frames, c.eventCount(), rowsJSON, reasonsJSON(skipped), reasonsJSON(repaired), len(w.segs))
	}
	if err = tx.SendBatch(ctx, b).Close(); err != nil {
		return res, false, fmt.Errorf("record segments: %w", err)
	}
	if l.beforeCommit != nil {
		if err = l.beforeCommit(ctx, conn); err != nil {
			return res, false, err
		}
	}
	if err = tx.Commit(ctx); err != nil {
		return res, false, fmt.Errorf("commit: %w", err)
	}
	return res, false, nil
}
