package loader

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/backfill/backfill/decode"
	"github.com/jackc/pgx/v5"
)

// benchEvents returns n events shaped like the firehose: mostly likes, then posts, reposts and
// follows, a few blocks, profiles, deletes, identity and account events, over 20k accounts.
func benchEvents(n int) []tEvent {
	rng := rand.New(rand.NewPCG(42, 42))
	did := func() string { return fmt.Sprintf("did:plc:bench%019d", rng.IntN(20000)) }
	var evs []tEvent
	type made struct{ did, coll, rkey string }
	var created []made
	for i := range n {
		seq := int64(i + 1)
		e := tEvent{seq: seq, time: t0.Add(time.Duration(seq) * time.Millisecond), kind: decode.KindCommit, did: did()}
		rkey := fmt.Sprintf("3l%011d", i)
		switch r := rng.IntN(100); {
		case r < 45:
			e.ops = []tOp{op("create", nsLike, rkey, fmt.Sprintf("at://%s/%s/3l%011d", did(), nsPost, rng.IntN(n)))}
		case r < 60:
			e.ops = []tOp{{action: "create", coll: nsPost, rkey: rkey, text: fmt.Sprintf("post number %d with a little text to make it look real", i)}}
		case r < 70:
			e.ops = []tOp{op("create", nsRepost, rkey, fmt.Sprintf("at://%s/%s/3l%011d", did(), nsPost, rng.IntN(n)))}
		case r < 82:
			e.ops = []tOp{op("create", nsFollow, rkey, did())}
		case r < 84:
			e.ops = []tOp{op("create", nsBlock, rkey, did())}
		case r < 86:
			e.ops = []tOp{{action: "update", coll: nsProfile, rkey: "self", displayName: sp(fmt.Sprintf("Name %d", i)), description: sp("bio")}}
		case r < 93 && len(created) > 0:
			m := created[rng.IntN(len(created))]
			e.did = m.did
			e.ops = []tOp{op("delete", m.coll, m.rkey, "")}
		case r < 97:
			e.kind = decode.KindIdentity
			e.handle = sp(fmt.Sprintf("user%d.bsky.social", rng.IntN(20000)))
		default:
			e.kind = decode.KindAccount
			e.active = true
		}
		for _, o := range e.ops {
			if o.action == "create" && o.coll != nsProfile {
				created = append(created, made{e.did, o.coll, o.rkey})
			}
		}
		evs = append(evs, e)
	}
	return evs
}

// copyTables are the tables the ceiling copies, with their columns.
var copyTables = []struct {
	name string
	cols []string
}{
	{"users", []string{"did", "handle", "display_name", "description", "profile_record", "created_at", "indexed_at"}},
	{"posts", []string{"uri", "cid", "author_did", "text", "tags", "created_at", "indexed_at"}},
	{"likes", []string{"uri", "user_did", "post_uri", "created_at", "indexed_at"}},
	{"reposts", []string{"uri", "user_did", "post_uri", "created_at", "indexed_at"}},
	{"follows", []string{"uri", "follower_did", "following_did", "created_at", "indexed_at"}},
	{"blocks", []string{"uri", "blocker_did", "blocked_did", "created_at", "indexed_at"}},
}

// BenchmarkLoad loads 100k synthetic events into an empty database, then COPYs the rows the
// load produced into empty copies of the same tables (same indexes) as the ceiling. With
// LOADER_TRACE=1 it also prints the server time of each kind of statement (trace_test.go).
func BenchmarkLoad(b *testing.B) {
	dir := benchSpoolDir(b)
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		url := testDB(b)
		sum, events, rows, loadTime := timedLoad(b, url, dir)

		// The ceiling: the final rows, COPYed into empty tables with the same indexes.
		c := dbConn(b, url)
		data := map[string][][]any{}
		var copied int64
		for _, tab := range copyTables {
			exec(b, c, fmt.Sprintf("CREATE TABLE ceil_%s (LIKE %s INCLUDING ALL)", tab.name, tab.name))
			r, err := c.Query(ctx, fmt.Sprintf("SELECT %s FROM %s", strings.Join(tab.cols, ", "), tab.name))
			if err != nil {
				b.Fatal(err)
			}
			vals, err := pgx.CollectRows(r, func(row pgx.CollectableRow) ([]any, error) { return row.Values() })
			if err != nil {
				b.Fatal(err)
			}
			data[tab.name] = vals
			copied += int64(len(vals))
		}
		exec(b, c, "CHECKPOINT")
		start := time.Now()
		for _, tab := range copyTables {
			t1 := time.Now()
			tx, err := c.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ceil_" + tab.name}, tab.cols, pgx.CopyFromRows(data[tab.name])); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			b.Logf("ceiling %s: %d rows in %v", tab.name, len(data[tab.name]), time.Since(t1))
		}
		copyTime := time.Since(start)
		b.StartTimer()

		loadRate := float64(rows) / loadTime.Seconds()
		copyRate := float64(copied) / copyTime.Seconds()
		b.ReportMetric(float64(events)/loadTime.Seconds(), "events/s")
		b.ReportMetric(loadRate, "rows/s")
		b.ReportMetric(copyRate, "copy_rows/s")
		b.ReportMetric(loadRate/copyRate, "ratio")
		b.Logf("%d events, %d rows inserted in %v (decode %v, write %v, wait %v); ceiling: %d rows COPYed in %v",
			events, rows, loadTime.Round(time.Millisecond), sum.DecodeTime.Round(time.Millisecond), sum.WriteTime.Round(time.Millisecond), sum.WaitTime.Round(time.Millisecond), copied, copyTime.Round(time.Millisecond))
	}
}

// benchSpoolDir writes the 100k events of benchEvents into a spool of ten segments.
func benchSpoolDir(b *testing.B) string {
	const n = 100_000
	dir := b.TempDir()
	var cuts []int
	for i := 9999; i < n; i += 10000 {
		cuts = append(cuts, i)
	}
	writeSpool(b, dir, benchEvents(n), cuts...)
	return dir
}

// timedLoad loads dir into url with the timer running (and the statement profile when
// LOADER_TRACE is set), and returns the summary, the events and rows inserted, and the time.
func timedLoad(b *testing.B, url, dir string) (sum Summary, events, rows int64, took time.Duration) {
	l := openLoader(b, Config{DatabaseURL: url, Workers: 2})
	profile := traceStatements(b, l)
	b.StartTimer()
	start := time.Now()
	sum, err := l.Run(context.Background(), dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	took = time.Since(start)
	b.StopTimer()
	profile()
	l.Close()
	for _, v := range sum.Events {
		events += v
	}
	for _, rc := range sum.Rows {
		rows += rc.Inserted
	}
	return sum, events, rows, took
}

// BenchmarkLoadOverlap is the worst case of the direct COPY: the 100k events of BenchmarkLoad
// are loaded, the loader's bookkeeping is cleared, and the same spool is loaded again, so that
// every create meets a row that already exists (as when the live app wrote the range first).
// It reports the second load.
func BenchmarkLoadOverlap(b *testing.B) {
	dir := benchSpoolDir(b)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		url := testDB(b)
		load(b, Config{DatabaseURL: url, Workers: 2}, dir)
		c := dbConn(b, url)
		exec(b, c, "TRUNCATE backfill_segments, backfill_loader, firehose_cursor")
		exec(b, c, "VACUUM ANALYZE")
		exec(b, c, "CHECKPOINT")
		sum, events, rows, loadTime := timedLoad(b, url, dir)
		b.ReportMetric(float64(events)/loadTime.Seconds(), "events/s")
		b.Logf("%d events, %d rows inserted in %v (write %v)", events, rows, loadTime.Round(time.Millisecond), sum.WriteTime.Round(time.Millisecond))
		b.StartTimer()
	}
}
