package loader

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backfill/backfill/decode"
)

// randomEvents returns n events over a small key space, so that uris, pairs and DIDs collide
// often, with some frames that do not decode and some events without a time.
func randomEvents(rng *rand.Rand, n int, firstSeq int64) []tEvent {
	return randomEventsIn(rng, n, firstSeq, keySpace{dids: 4, rkeys: 3, posts: 2})
}

// keySpace is how many DIDs, record keys and liked post keys random events draw from.
type keySpace struct{ dids, rkeys, posts int }

// randomEventsIn is randomEvents over the keys of ks.
func randomEventsIn(rng *rand.Rand, n int, firstSeq int64, ks keySpace) []tEvent {
	did := func() string { return fmt.Sprintf("did:plc:d%d", rng.IntN(ks.dids)) }
	colls := []string{nsPost, nsLike, nsRepost, nsFollow, nsBlock, nsProfile, nsOther}
	var evs []tEvent
	seq := firstSeq
	for range n {
		seq += 1 + int64(rng.IntN(3))
		e := tEvent{seq: seq, time: at(seq).Add(time.Duration(rng.IntN(5000)-2500) * time.Millisecond), did: did()}
		if rng.IntN(20) == 0 {
			e.time = time.Time{}
		}
		switch r := rng.IntN(100); {
		case r < 2:
			e.bad = true
		case r < 12:
			e.kind = decode.KindIdentity
			if rng.IntN(3) > 0 {
				e.handle = sp(fmt.Sprintf("H%d.Test", rng.IntN(3)))
			}
		case r < 17:
			e.kind = decode.KindAccount
			e.active = rng.IntN(2) == 0
			if !e.active || rng.IntN(2) == 0 {
				e.status = sp([]string{"takendown", "suspended", "deleted", "deactivated"}[rng.IntN(4)])
			}
		case r < 20:
			e.kind = decode.KindSync
		default:
			e.kind = decode.KindCommit
			for range 1 + rng.IntN(3) {
				o := tOp{coll: colls[rng.IntN(len(colls))], rkey: fmt.Sprintf("r%d", rng.IntN(ks.rkeys))}
				switch r := rng.IntN(10); {
				case r < 5:
					o.action = "create"
				case r < 7:
					o.action = "update"
				default:
					o.action = "delete"
				}
				switch o.coll {
				case nsLike, nsRepost:
					o.subject = fmt.Sprintf("at://%s/%s/p%d", did(), nsPost, rng.IntN(ks.posts))
				case nsFollow, nsBlock:
					o.subject = did()
				case nsPost:
					o.text = fmt.Sprintf("text %d", rng.IntN(100))
				case nsProfile:
					o.rkey = "self"
					if rng.IntN(10) == 0 {
						o.rkey = "other"
					}
					o.displayName = sp(fmt.Sprintf("name %d", rng.IntN(100)))
					if rng.IntN(2) == 0 {
						o.description = sp("about")
					}
				}
				if rng.IntN(8) == 0 {
					o.created = "garbage"
				}
				e.ops = append(e.ops, o)
			}
		}
		if e.bad {
			e.time = at(seq)
		}
		evs = append(evs, e)
	}
	return evs
}

// seedRandom has the live app write a few users, posts and pair rows over randomEvents' key
// space, keeping the unique keys unique.
func seedRandom(rng *rand.Rand, a liveApp) {
	did := func() string { return fmt.Sprintf("did:plc:d%d", rng.IntN(4)) }
	t := at(0)
	for range rng.IntN(3) {
		if d := did(); a.m.users[d] == nil {
			a.user(d, fmt.Sprintf("live%d.test", rng.IntN(3)), t)
		}
	}
	for range rng.IntN(4) {
		d, rkey := did(), fmt.Sprintf("r%d", rng.IntN(3))
		if _, ok := a.m.posts[post(d, rkey)]; !ok {
			a.post(d, rkey, "live", t)
		}
	}
	for _, ns := range []string{nsLike, nsRepost, nsFollow, nsBlock} {
	seed:
		for range rng.IntN(5) {
			d, rkey := did(), fmt.Sprintf("r%d", rng.IntN(3))
			subject := did()
			if ns == nsLike || ns == nsRepost {
				subject = fmt.Sprintf("at://%s/%s/p%d", did(), nsPost, rng.IntN(2))
			}
			uri := "at://" + d + "/" + ns + "/" + rkey
			if _, ok := a.m.pairs[ns][uri]; ok {
				continue
			}
			for _, r := range a.m.pairs[ns] {
				if r.a == d && r.b == subject {
					continue seed
				}
			}
			a.pair(ns, d, rkey, subject, t)
		}
	}
}

func TestRandomized(t *testing.T) {
	t.Parallel()
	url := testDB(t)
	c := dbConn(t, url)
	iterations := 24
	if n, err := strconv.Atoi(os.Getenv("LOADER_RANDOM_ITERATIONS")); err == nil && n > 0 {
		iterations = n // a longer hunt: LOADER_RANDOM_ITERATIONS=500 go test -run TestRandomized ./loader/
	}
	var elided [NumTables]int64
	var pend struct{ left, materialized, ended int }
	// Some runs have COMMITs refused by the server (a serialization failure, raised at COMMIT
	// by a deferred trigger on a row the transaction inserts): the unit is tried again, after
	// the writer took its change of pending rows while the server committed.
	if _, err := ensureSchema(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	refusableCommits(t, c)
	var refused, refusedPending int
	var ahead int64 // rows written by head starts
	for it := range iterations {
		rng := rand.New(rand.NewPCG(uint64(it), 99))
		hrng := rand.New(rand.NewPCG(uint64(it), 7)) // head starts: off, when the next unit is ready, or always
		evs := randomEvents(rng, 40+rng.IntN(200), 0)
		cfg := Config{DatabaseURL: url, Workers: 1 + rng.IntN(4), BatchSize: 1 + rng.IntN(4)}
		m := newModel()
		if rng.IntN(4) == 0 {
			cfg.Since = at(evs[len(evs)/4].seq)
			cfg.Until = at(evs[3*len(evs)/4].seq)
			m.since, m.until = cfg.Since, cfg.Until
		}
		if rng.IntN(4) == 0 {
			m.selected = map[string]bool{}
			for col := decode.CollectionPost; col < decode.NumCollections; col++ {
				if rng.IntN(2) == 0 {
					cfg.Collections = append(cfg.Collections, col)
					m.selected[nsOf(col)] = true
				}
			}
			if len(cfg.Collections) == 0 {
				m.selected = nil
			}
		}
		safe := rng.IntN(3) == 0
		direct := directPolicy(rng.IntN(4))
		if rng.IntN(2) == 0 {
			// The live app wrote rows of the same key space first: the direct COPY meets them.
			if _, err := ensureSchema(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			seedRandom(rng, liveApp{t, c, m})
		}
		m.applyAll(evs)

		// Write the spool in up to three runs of the producer, loading after each.
		dir := t.TempDir()
		runs := 1 + rng.IntN(3)
		bounds := []int{0}
		for r := 1; r < runs; r++ {
			bounds = append(bounds, rng.IntN(len(evs)))
		}
		bounds = append(bounds, len(evs))
		slices.Sort(bounds)
		for r := 1; r < len(bounds); r++ {
			lo, hi := bounds[r-1], bounds[r]
			if lo == hi {
				continue
			}
			var cuts []int
			for i := range hi - lo {
				if rng.IntN(15) == 0 {
					cuts = append(cuts, i)
				}
			}
			writeSpool(t, dir, evs[lo:hi], cuts...)
			// Each run with or without the delete index, or with some of it missing: the rows a
			// run leaves out pending must end right in a run that takes no hints.
			rcfg := cfg
			rcfg.NoDeleteHints = rng.IntN(4) == 0
			refuse := 0 // every refuse-th COMMIT is refused, once
			if rng.IntN(3) == 0 {
				refuse = 2 + rng.IntN(3)
				rcfg.Retry = RetryPolicy{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
			}
			if rng.IntN(4) == 0 {
				dropSomeDeleteIndexes(t, rng, dir)
			}
			var loader *Loader
			sum := load(t, rcfg, dir, func(l *Loader) {
				loader = l
				l.direct = direct
				switch hrng.IntN(3) {
				case 0:
					l.noHead = true
				case 2:
					l.waitNext = true
				}
				l.pendingCompact = 1 + rng.IntN(4) // backfill_pending's log rewritten often
				if refuse > 0 {
					commits := 0
					l.beforeCommit = func(ctx context.Context, conn *pgx.Conn) error {
						if commits++; commits%refuse != 0 {
							return nil
						}
						refused++
						if l.pending != nil && l.pending.n > 0 {
							refusedPending++
						}
						_, err := conn.Exec(ctx, `INSERT INTO test_commit_fails VALUES (1)`)
						return err
					}
				}
				if safe {
					// As for tables with unique keys beyond SCHEMA.md's: ON CONFLICT everywhere.
					for _, tab := range tableNames[:TableAccounts] {
						l.schema.extraKeys[tab] = true
					}
				}
			})
			for tab, rc := range sum.Rows {
				elided[tab] += rc.Elided
			}
			pend.left += loader.pendingCounts.left
			pend.materialized += loader.pendingCounts.materialized
			pend.ended += loader.pendingCounts.ended
			ahead += sum.AheadRows
		}
		// Every row left out pending meets its delete in the spool.
		if s, _, err := readPending(context.Background(), c); err != nil || s.n != 0 {
			t.Fatalf("iteration %d: %v; rows still pending after the whole spool: %+v", it, err, s)
		}
		if d := diffDumps(dumpDB(t, c), m.dump()); d != "" {
			t.Fatalf("iteration %d (%d events, workers %d, batch %d, safe %v, direct %d, collections %v, window %v-%v): database differs from the sequential model:\n%s",
				it, len(evs), cfg.Workers, cfg.BatchSize, safe, direct, cfg.Collections, cfg.Since, cfg.Until, d)
		}
		exec(t, c, `TRUNCATE users, posts, likes, reposts, follows, blocks, firehose_cursor, backfill_segments, backfill_accounts, backfill_loader, backfill_pending`)
	}
	// The iterations must have taken every path of left-out creates.
	t.Logf("left out: %v; pending rows left %d, materialized %d, ended %d", elided, pend.left, pend.materialized, pend.ended)
	if elided[TableUsers] == 0 || elided[TablePosts] == 0 || elided[TableLikes]+elided[TableReposts]+elided[TableFollows]+elided[TableBlocks] == 0 {
		t.Errorf("no profile, no post or no pair create was left out: %v", elided)
	}
	t.Logf("COMMITs refused: %d, %d of them with rows pending; rows written ahead: %d", refused, refusedPending, ahead)
	if ahead == 0 {
		t.Errorf("no rows were written by a head start")
	}
	if refusedPending == 0 {
		t.Errorf("no COMMIT was refused while rows were pending")
	}
	if pend.left == 0 || pend.materialized == 0 || pend.ended == 0 {
		t.Errorf("pending rows: %d left, %d materialized, %d ended; want each > 0", pend.left, pend.materialized, pend.ended)
	}
}

// refusableCommits creates test_commit_fails, whose deferred trigger refuses the COMMIT of any
// transaction that inserts into it (a serialization failure).
func refusableCommits(tb testing.TB, c *pgx.Conn) {
	tb.Helper()
	exec(tb, c, `CREATE TABLE IF NOT EXISTS test_commit_fails (x int)`)
	exec(tb, c, `CREATE OR REPLACE FUNCTION test_fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'COMMIT refused by the test' USING ERRCODE = '40001'; END $$`)
	exec(tb, c, `DROP TRIGGER IF EXISTS fail_commit ON test_commit_fails`)
	exec(tb, c, `CREATE CONSTRAINT TRIGGER fail_commit AFTER INSERT ON test_commit_fails DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_fail_commit()`)
}

// dropSomeDeleteIndexes removes some of the delete indexes of the spool at dir: a segment
// without one is a barrier the loader's hints do not cross.
func dropSomeDeleteIndexes(tb testing.TB, rng *rand.Rand, dir string) {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "segments", "*.del"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range files {
		if rng.IntN(3) == 0 {
			if err := os.Remove(f); err != nil {
				tb.Fatal(err)
			}
		}
	}
}
