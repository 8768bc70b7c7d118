package loader

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// schemaDB returns a test database with the loader's tables, and a connection to it.
func schemaDB(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	url := testDB(t)
	c := dbConn(t, url)
	if _, err := ensureSchema(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return url, c
}

// filler is a commit whose creates nothing else touches: they go ahead.
func filler(seq int64, did string) tEvent {
	return commitEv(seq, did, postOp("create", fmt.Sprintf("f%d", seq), "filler"),
		op("create", nsLike, fmt.Sprintf("f%d", seq), post(bob, fmt.Sprintf("x%d", seq))),
		op("create", nsFollow, fmt.Sprintf("f%d", seq), fmt.Sprintf("did:plc:f%d", seq)))
}

// fillerUnits writes a spool of six units of one filler commit each, and returns it with the
// sequential model of its events.
func fillerUnits(t *testing.T) (string, *model) {
	t.Helper()
	var evs []tEvent
	for i := range 6 {
		evs = append(evs, filler(int64(i+1), []string{alice, bob}[i%2]))
	}
	m := newModel()
	m.applyAll(evs)
	dir := t.TempDir()
	writeSpool(t, dir, evs, 0, 1, 2, 3, 4)
	return dir, m
}

// TestHeadStart loads sequences of units of one segment each, the writer waiting for each next
// unit so that its head start runs while the unit before is written, and compares the database
// with the sequential model. Each case is a way a unit's early creates could go wrong if the
// head start took the wrong ones: keys the unit before touches, rows the live app wrote, rows
// deleted or left out in between.
func TestHeadStart(t *testing.T) {
	t.Parallel()
	likeS := post(carol, "s")
	like := func(action, rkey string) tOp { return op(action, nsLike, rkey, likeS) }
	follow := func(action, rkey string) tOp { return op(action, nsFollow, rkey, carol) }
	cases := []struct {
		name  string
		live  func(a liveApp)
		evs   []tEvent
		ahead bool // some rows must have gone ahead
	}{
		{
			name:  "creates nothing else touches go ahead",
			evs:   []tEvent{filler(1, alice), filler(2, bob), filler(3, alice), filler(4, bob)},
			ahead: true,
		},
		{
			// The unit before deletes the row that holds the pair: the early COPY waits for its
			// COMMIT, then inserts.
			name: "the unit before deletes the live row with the pair",
			live: func(a liveApp) { a.pair(nsLike, alice, "r0", likeS, at(0)) },
			evs: []tEvent{
				commitEv(1, alice, like("delete", "r0")), filler(2, bob),
				commitEv(3, alice, like("create", "r1")), filler(4, bob),
			},
			ahead: true,
		},
		{
			// The unit deletes the live row with the pair, then creates the pair anew: the early
			// COPY meets the row and is undone, the unit writes its likes as usual.
			name: "the unit deletes the live row with the pair, then creates it",
			live: func(a liveApp) { a.pair(nsLike, alice, "r0", likeS, at(0)) },
			evs: []tEvent{
				filler(1, bob),
				commitEv(2, alice, like("delete", "r0"), like("create", "r1")), filler(3, bob),
			},
		},
		{
			name: "the live app has the uri of a create",
			live: func(a liveApp) {
				a.post(alice, "p1", "live", at(0))
				a.pair(nsFollow, alice, "r1", bob, at(0))
			},
			evs: []tEvent{
				filler(1, bob),
				commitEv(2, alice, postOp("create", "p1", "spool"), follow("create", "r1")), filler(3, bob),
			},
		},
		{
			name: "the unit before creates the pair by another uri",
			evs: []tEvent{
				commitEv(1, alice, like("create", "r1"), follow("create", "r1")), filler(2, bob),
				commitEv(3, alice, like("create", "r2"), follow("create", "r2")), filler(4, bob),
			},
		},
		{
			name: "the unit before deletes what an earlier one created, the unit creates it again",
			evs: []tEvent{
				commitEv(1, alice, like("create", "r1"), postOp("create", "p1", "one")), filler(2, bob),
				commitEv(3, alice, like("delete", "r1"), postOp("delete", "p1", "")), filler(4, bob),
				commitEv(5, alice, like("create", "r2"), postOp("create", "p1", "two")), filler(6, bob),
			},
		},
		{
			// r1 is left out (a later unit deletes it) and pending when the unit with r2 starts
			// ahead: r2, which sequential application skips, must not go ahead.
			name: "a pending row holds the pair",
			evs: []tEvent{
				commitEv(1, alice, like("create", "r1"), follow("create", "r1")), filler(2, bob),
				filler(3, bob), filler(4, bob),
				commitEv(5, alice, like("create", "r2"), follow("create", "r2")), filler(6, bob),
				commitEv(7, alice, like("delete", "r1"), follow("delete", "r1")), filler(8, bob),
			},
		},
		{
			name: "a create and a delete of the same uri in the unit",
			evs: []tEvent{
				filler(1, bob),
				commitEv(2, alice, like("create", "r1"), like("delete", "r1"), like("create", "r2"), postOp("create", "p1", "x"), postOp("delete", "p1", "")),
				filler(3, bob),
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url, c := schemaDB(t)
			m := newModel()
			if tc.live != nil {
				tc.live(liveApp{t, c, m})
			}
			m.applyAll(tc.evs)
			dir := t.TempDir()
			cuts := make([]int, len(tc.evs))
			for i := range cuts {
				cuts[i] = i
			}
			writeSpool(t, dir, tc.evs, cuts...)
			sum := load(t, Config{DatabaseURL: url, Workers: 2, BatchSize: 1}, dir, func(l *Loader) {
				l.waitNext = true
				l.direct = directAlways
			})
			if d := diffDumps(dumpDB(t, c), m.dump()); d != "" {
				t.Fatalf("database differs from the sequential model:\n%s", d)
			}
			t.Logf("%d transactions, %d begun ahead with %d rows", sum.Transactions, sum.AheadUnits, sum.AheadRows)
			if tc.ahead && sum.AheadRows == 0 {
				t.Errorf("no rows went ahead")
			}
			if sum.AheadUnits >= sum.Transactions {
				t.Errorf("%d of %d transactions begun ahead: the first cannot be", sum.AheadUnits, sum.Transactions)
			}
		})
	}
}

// TestHeadStartBlocked checks that a unit that starts ahead does not deadlock with the unit
// before: the unit before deletes a row and holds its lock until its COMMIT, which waits here
// until the early COPY of a create with that row's pair has been sent (and waits for it).
func TestHeadStartBlocked(t *testing.T) {
	t.Parallel()
	url, c := schemaDB(t)
	m := newModel()
	liveApp{t, c, m}.pair(nsFollow, alice, "r0", carol, at(0))
	evs := []tEvent{
		commitEv(1, bob, postOp("create", "b1", "x")),
		commitEv(2, alice, op("delete", nsFollow, "r0", "")),
		commitEv(3, alice, op("create", nsFollow, "r1", carol), postOp("create", "a1", "y")),
	}
	m.applyAll(evs)
	dir := t.TempDir()
	writeSpool(t, dir, evs, 0, 1, 2)
	commits := 0
	deleted := make(chan struct{})
	sum := load(t, Config{DatabaseURL: url, Workers: 1, BatchSize: 1}, dir, func(l *Loader) {
		l.waitNext = true
		l.direct = directAlways
		// The third unit's early COPY goes once the second unit has deleted the row.
		l.beforeHead = func() { <-deleted }
		l.beforeCommit = func(ctx context.Context, conn *pgx.Conn) error {
			if commits++; commits != 2 {
				return nil
			}
			close(deleted)
			// The second unit (the delete) commits once the third's early COPY waits for it.
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				var waiting int
				if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`).Scan(&waiting); err != nil {
					return err
				}
				if waiting > 0 {
					return nil
				}
				time.Sleep(10 * time.Millisecond)
			}
			return fmt.Errorf("the early COPY never waited for the unit before")
		}
	})
	if d := diffDumps(dumpDB(t, c), m.dump()); d != "" {
		t.Fatalf("database differs from the sequential model:\n%s", d)
	}
	if sum.AheadUnits != 1 {
		t.Errorf("%d transactions begun ahead, want 1", sum.AheadUnits)
	}
}

// TestHeadStartRandomized loads random event sequences over a key space wide enough that many
// creates are alone on their keys, one segment a unit, the writer waiting for each next unit so
// that it starts ahead; some COMMITs are refused (the unit that began ahead is then written
// again the usual way). The database must equal the sequential model every time.
func TestHeadStartRandomized(t *testing.T) {
	t.Parallel()
	url, c := schemaDB(t)
	refusableCommits(t, c)
	var ahead, aheadUnits, refusedAhead int64
	iterations := 12
	if n, err := strconv.Atoi(os.Getenv("LOADER_RANDOM_ITERATIONS")); err == nil && n > 0 {
		iterations = n
	}
	for it := range iterations {
		rng := rand.New(rand.NewPCG(uint64(it), 5))
		evs := randomEventsIn(rng, 300+rng.IntN(300), 0, keySpace{dids: 10 + rng.IntN(20), rkeys: 5 + rng.IntN(20), posts: 3 + rng.IntN(10)})
		m := newModel()
		if rng.IntN(2) == 0 {
			seedRandom(rng, liveApp{t, c, m})
		}
		m.applyAll(evs)
		dir := t.TempDir()
		var cuts []int
		for i := range evs {
			if rng.IntN(25) == 0 {
				cuts = append(cuts, i)
			}
		}
		writeSpool(t, dir, evs, cuts...)
		cfg := Config{DatabaseURL: url, Workers: 1 + rng.IntN(3), BatchSize: 1 + rng.IntN(2), NoDeleteHints: rng.IntN(3) == 0,
			Retry: RetryPolicy{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}}
		refuse := 0
		if rng.IntN(2) == 0 {
			refuse = 2 + rng.IntN(3)
		}
		direct := []directPolicy{directAdaptive, directAlways}[rng.IntN(2)]
		commits := 0
		sum := load(t, cfg, dir, func(l *Loader) {
			l.waitNext = true
			l.direct = direct
			if refuse > 0 {
				l.beforeCommit = func(ctx context.Context, conn *pgx.Conn) error {
					if commits++; commits%refuse != 0 {
						return nil
					}
					if l.pre != nil {
						refusedAhead++
					}
					_, err := conn.Exec(ctx, `INSERT INTO test_commit_fails VALUES (1)`)
					return err
				}
			}
		})
		ahead += sum.AheadRows
		aheadUnits += int64(sum.AheadUnits)
		if d := diffDumps(dumpDB(t, c), m.dump()); d != "" {
			t.Fatalf("iteration %d (%d events, %d cuts, workers %d, batch %d, direct %d, refuse %d): database differs from the sequential model:\n%s",
				it, len(evs), len(cuts), cfg.Workers, cfg.BatchSize, direct, refuse, d)
		}
		exec(t, c, `TRUNCATE users, posts, likes, reposts, follows, blocks, firehose_cursor, backfill_segments, backfill_accounts, backfill_loader, backfill_pending`)
	}
	t.Logf("%d transactions begun ahead with %d rows; %d COMMITs refused after a head start", aheadUnits, ahead, refusedAhead)
	if ahead < 100 || refusedAhead == 0 {
		t.Errorf("the iterations wrote %d rows ahead and refused %d COMMITs after a head start: too few to test it", ahead, refusedAhead)
	}
}

// TestHeadStartLockLost ends the main connection (the holder of the loader lock) while a unit
// that began ahead on the helper connection is about to commit: the unit must not commit
// without the lock, and is retried on a new main connection, which takes it again.
func TestHeadStartLockLost(t *testing.T) {
	t.Parallel()
	url := testDB(t)
	c := dbConn(t, url)
	dir, m := fillerUnits(t)
	killed := false
	sum := load(t, Config{DatabaseURL: url, Workers: 1, BatchSize: 1, Retry: RetryPolicy{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}}, dir, func(l *Loader) {
		l.waitNext = true
		l.direct = directAlways
		l.beforeCommit = func(ctx context.Context, conn *pgx.Conn) error {
			if killed || l.pre == nil || l.pre.onMain {
				return nil
			}
			killed = true
			pid := l.conn.PgConn().PID()
			exec(t, c, `SELECT pg_terminate_backend($1)`, pid)
			for range 500 {
				var n int
				if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&n); err != nil {
					return err
				}
				if n == 0 {
					return nil
				}
				time.Sleep(10 * time.Millisecond)
			}
			return fmt.Errorf("backend %d still there", pid)
		}
	})
	if !killed {
		t.Fatal("no unit was written on the helper connection")
	}
	if sum.Retries == 0 {
		t.Errorf("the unit committed on the helper after the lock was lost")
	}
	if d := diffDumps(dumpDB(t, c), m.dump()); d != "" {
		t.Fatalf("database differs from the sequential model:\n%s", d)
	}
}

// TestHeadStartHelperLost ends the helper connection under a unit's head start once the next
// unit's head start has begun on the main connection: the unit goes the usual way on the main
// connection, the next unit's head start giving way to it (or the unit's statements would run
// in that transaction), and the database equals the sequential model.
func TestHeadStartHelperLost(t *testing.T) {
	t.Parallel()
	url, c := schemaDB(t)
	dir, m := fillerUnits(t)
	var heads atomic.Int32
	nextBegun := make(chan struct{})
	killed := false
	sum := load(t, Config{DatabaseURL: url, Workers: 1, BatchSize: 1, Retry: RetryPolicy{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}}, dir, func(l *Loader) {
		l.waitNext = true
		l.direct = directAlways
		l.beforeHead = func() {
			switch heads.Add(1) {
			case 1: // the second unit's, on the helper (the first unit has none)
				select {
				case <-nextBegun:
				case <-time.After(10 * time.Second):
					t.Error("the third unit's head start did not begin while the second unit's ran")
					return
				}
				ctx := context.Background()
				var pid uint32
				if err := c.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'backfill-loader' AND pid <> $1`, l.mainPID).Scan(&pid); err != nil {
					t.Errorf("find the helper connection: %v", err)
					return
				}
				if _, err := c.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
					t.Errorf("end the helper connection: %v", err)
					return
				}
				killed = true
			case 2: // the third unit's, on the main connection
				l.headMu.Lock()
				onMain := l.ahead != nil && l.ahead.onMain
				l.headMu.Unlock()
				if !onMain {
					t.Error("the third unit's head start is not on the main connection")
				}
				close(nextBegun)
			}
		}
	})
	if !killed {
		t.Fatal("the helper connection was not ended")
	}
	// The second unit's head start failed and the third's gave way: the fourth, fifth and
	// sixth units began ahead.
	if sum.AheadUnits != 3 {
		t.Errorf("%d units began ahead, want 3", sum.AheadUnits)
	}
	if d := diffDumps(dumpDB(t, c), m.dump()); d != "" {
		t.Fatalf("database differs from the sequential model:\n%s", d)
	}
}
