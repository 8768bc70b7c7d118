package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backfill/backfill/decode"
	"github.com/backfill/backfill/deletes"
	"github.com/backfill/backfill/loader"
	"github.com/backfill/backfill/relaytest"
	"github.com/backfill/backfill/spool"
)

var (
	benchEvents  = flag.Int("bench-events", 1_000_000, "events in the load benchmark's spool")
	benchPrefill = flag.Int("bench-prefill", 10_000_000, "rows already in the tables for the load benchmark's second round (0 skips it)")
	benchNaive   = flag.Duration("bench-naive", 60*time.Second, "how long the load benchmark runs the row-by-row floor")
	benchRepeat  = flag.Int("bench-repeat", 5, "loads and ceilings per round of the load benchmark (alternately; medians reported)")
)

// BenchmarkLoadLarge loads a spool of realistic events (from the test relay: real MSTs, signed
// commits, the six record types with deletes and updates) and reports, in one run:
//   - load:  `backfill load` as a child process: events/s, rows/s, peak RSS
//   - copy:  raw COPY of the same final rows into empty copies of the same tables with the same
//     indexes (the ceiling)
//   - naive: one autocommitted statement per row, as the replaced tool does (the floor),
//     run for -bench-naive on the start of the spool
//
// then the same three with -bench-prefill rows already in the tables. Each round runs the load
// and the ceiling -bench-repeat times, alternately, each into a fresh copy of the round's
// template, and reports their medians: a machine shared with others drifts between runs (single
// pairs of one run ranged from 0.5 to 1.07 of each other), and five pairs a round settle the
// medians more than three did. The spool is cached in $TMPDIR/backfill-bench between runs.
//
// Run it with: go test -run '^$' -bench BenchmarkLoadLarge -benchtime 1x -timeout 90m .
func BenchmarkLoadLarge(b *testing.B) {
	// Built first: the build's files are then written back by the sync before the first load
	// (newDatabaseFrom), not during it (the first load ran 20-35% longer than the next two).
	binary(b)
	dir := benchSpool(b, *benchEvents)
	// The testing package keeps ten lines of a benchmark's log: two a round (its pairs, then
	// its medians), one for the prefill and one for a spool generated.
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		round := func(name, template string) {
			// load and ceiling, alternately, -bench-repeat times each: the medians are reported
			var loads, copies []time.Duration
			var rss, events, rows, copyRows int64
			var dump map[string][]byte
			var pairs []string
			for r := range *benchRepeat {
				dsn := newDatabaseFrom(b, template)
				loadTime, peak := timeLoad(b, dsn, dir)
				loads, rss = append(loads, loadTime), max(rss, peak)
				ev, rw := loadedCounts(b, dsn)
				if r > 0 && (ev != events || rw != rows) {
					b.Fatalf("load %d wrote %d events, %d rows; the first %d, %d", r+1, ev, rw, events, rows)
				}
				events, rows = ev, rw
				if dump == nil {
					dump = dumpTables(b, dsn) // the final rows, the same every time
				}
				dropDatabase(b, dsn)

				// ceiling: COPY the final rows into copies of the tables
				cdsn := newDatabaseFrom(b, template)
				n, copyTime := copyTables(b, cdsn, dump)
				copies, copyRows = append(copies, copyTime), n
				dropDatabase(b, cdsn)
				pairs = append(pairs, fmt.Sprintf("%.2f/%.2f s (%.2f, %.0f MiB)",
					loadTime.Seconds(), copyTime.Seconds(), copyTime.Seconds()/loadTime.Seconds(), float64(peak)/1024))
			}
			b.Logf("%s: %d events, %d rows written; copy of the %d final rows; load/copy pairs in order (ratio, peak RSS): %s",
				name, events, rows, copyRows, strings.Join(pairs, ", "))
			loadTime, copyTime := median(loads), median(copies)
			b.ReportMetric(float64(events)/loadTime.Seconds(), name+"_load_events/s")
			b.ReportMetric(float64(rows)/loadTime.Seconds(), name+"_load_rows/s")
			b.ReportMetric(float64(rss)/1024, name+"_load_peak_RSS_MiB")
			b.ReportMetric(float64(copyRows)/copyTime.Seconds(), name+"_copy_rows/s")
			b.ReportMetric(copyTime.Seconds()/loadTime.Seconds(), name+"_load/copy")

			// floor
			ndsn := newDatabaseFrom(b, template)
			nEvents, nRows, nTime := naiveLoad(b, ndsn, dir, *benchNaive)
			dropDatabase(b, ndsn)
			b.ReportMetric(float64(nEvents)/nTime.Seconds(), name+"_naive_events/s")
			b.ReportMetric(float64(nRows)/nTime.Seconds(), name+"_naive_rows/s")
			b.ReportMetric((float64(events)/loadTime.Seconds())/(float64(nEvents)/nTime.Seconds()), name+"_load/naive")
			b.Logf("%s: load median %s: %.0f events/s, %.0f rows/s, peak RSS %.0f MiB; copy median %s: %.0f rows/s; ratio %.2f; "+
				"naive %d events, %d rows in %s: %.0f events/s, %.0f rows/s; load %.1fx naive",
				name, loadTime.Round(time.Millisecond), float64(events)/loadTime.Seconds(), float64(rows)/loadTime.Seconds(), float64(rss)/1024,
				copyTime.Round(time.Millisecond), float64(copyRows)/copyTime.Seconds(), copyTime.Seconds()/loadTime.Seconds(),
				nEvents, nRows, nTime.Round(time.Millisecond), float64(nEvents)/nTime.Seconds(), float64(nRows)/nTime.Seconds(),
				(float64(events)/loadTime.Seconds())/(float64(nEvents)/nTime.Seconds()))
		}
		empty := schemaTemplate(b, 0)
		round("empty", empty)
		if *benchPrefill > 0 {
			round(fmt.Sprintf("%dM", *benchPrefill/1_000_000), schemaTemplate(b, *benchPrefill))
		}
	}
}

// timeLoad runs `backfill load` of dir into dsn as a child process and returns its wall time
// and peak RSS (KiB).
func timeLoad(b *testing.B, dsn, dir string) (time.Duration, int64) {
	b.Helper()
	bin := binary(b) // builds it on first use: not part of the timed load
	t0 := time.Now()
	cmd := exec.Command(bin, "load", "--spool", dir, "--database-url", dsn, "--progress", "none", "--log-level", "warn")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	hwm := watchHWM(cmd.Process.Pid)
	if err := cmd.Wait(); err != nil {
		b.Fatalf("backfill load: %v\n%s", err, out.String())
	}
	return time.Since(t0), hwm()
}

// median returns the middle value of ds (the mean of the middle two for an even count).
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// dropDatabase drops dsn's database now, to give its disk and page cache back before the next
// step.
func dropDatabase(b *testing.B, dsn string) {
	b.Helper()
	execAll(b, adminDSN, "drop database", "DROP DATABASE IF EXISTS "+dbName(dsn)+" WITH (FORCE)")
}

// execAll runs statements one after another on a connection to dsn.
func execAll(b *testing.B, dsn, what string, stmts ...string) {
	b.Helper()
	ctx := context.Background()
	conn := connect(b, dsn)
	defer conn.Close(ctx)
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			b.Fatalf("%s: %v", what, err)
		}
	}
}

// benchSpool returns a spool of n relay events, generating it once per machine.
func benchSpool(b *testing.B, n int) string {
	b.Helper()
	dir := filepath.Join(os.TempDir(), "backfill-bench", fmt.Sprintf("spool-seed42-%d", n))
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		// A spool cached by an older build may be in another format: check before trusting it.
		if faults, err := spool.Verify(context.Background(), dir, func(spool.SegmentInfo, error) {}); err == nil && faults == 0 {
			// A spool cached before delete indexes gets them, as `backfill spool reindex` does.
			if n, err := buildDeleteIndexes(context.Background(), dir); err != nil {
				b.Fatal(err)
			} else if n > 0 {
				b.Logf("built the delete index of %d segments of %s", n, dir)
			}
			return dir
		}
		b.Logf("cached spool %s does not verify; generating it again", dir)
	}
	os.RemoveAll(dir)
	t0 := time.Now()
	const batch = 100_000
	// A fixed start time makes the frames the same bytes wherever the spool is generated (the
	// relay's default starts from the clock), so that every machine loads the same spool.
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r, err := relaytest.New(relaytest.Config{Seed: 42, Users: 5000, Events: min(n, batch), Interval: time.Millisecond, StartTime: start})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	dc := deletes.NewCollector() // as a fetch writes them
	sp, err := spool.Open(dir, spool.Options{OnSeal: dc.OnSeal})
	if err != nil {
		b.Fatal(err)
	}
	w, err := sp.NewWriter("bench.relay")
	if err != nil {
		b.Fatal(err)
	}
	written := 0
	for {
		for _, f := range r.Log()[written:] {
			if f.Kind == relaytest.KindInfo {
				continue // no seq of its own: a fetch never keeps it
			}
			dc.Add(f.Seq, f.Bytes)
			if err := w.Append(f.Seq, f.Time, f.Bytes); err != nil {
				b.Fatal(err)
			}
		}
		written = len(r.Log())
		if written >= n {
			break
		}
		r.Append(min(batch, n-written))
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	if err := dc.Err(); err != nil {
		b.Fatal(err)
	}
	sp.Close()
	if err := os.WriteFile(filepath.Join(dir, "complete"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d events into %s in %s", n, dir, time.Since(t0).Round(time.Second))
	return dir
}

// schemaTemplate creates a database with the AppView schema (made by the loader itself) and
// prefill rows spread over the tables like real data, to be copied by newDatabaseFrom.
func schemaTemplate(b *testing.B, prefill int) string {
	b.Helper()
	dsn := newDatabase(b)
	ctx := context.Background()
	l, err := loader.Open(ctx, loader.Config{DatabaseURL: dsn})
	if err != nil {
		b.Fatal(err)
	}
	l.Close()
	if prefill > 0 {
		t0 := time.Now()
		p := func(f float64) int { return int(float64(prefill) * f) }
		stmts := []string{
			fmt.Sprintf(`INSERT INTO users (did, handle, created_at, indexed_at) SELECT 'did:plc:fill' || md5(i::text), 'u' || i || '.bsky.social', now(), now() FROM generate_series(1, %d) i`, p(0.05)),
			fmt.Sprintf(`INSERT INTO posts (uri, cid, author_did, text, created_at, indexed_at) SELECT 'at://did:plc:fill' || md5((i %% 500000)::text) || '/app.bsky.feed.post/' || md5(i::text), 'bafyrei' || md5(i::text), 'did:plc:fill' || md5((i %% 500000)::text), 'prefilled post number ' || i || ' with some text in it', now(), now() FROM generate_series(1, %d) i`, p(0.20)),
			fmt.Sprintf(`INSERT INTO likes (uri, user_did, post_uri, created_at, indexed_at) SELECT 'at://did:plc:fill' || md5((i %% 500000)::text) || '/app.bsky.feed.like/' || md5(i::text), 'did:plc:fill' || md5((i %% 500000)::text), 'at://did:plc:fill' || md5(((i * 7) %% 500000)::text) || '/app.bsky.feed.post/' || md5((i * 13)::text), now(), now() FROM generate_series(1, %d) i`, p(0.50)),
			fmt.Sprintf(`INSERT INTO reposts (uri, user_did, post_uri, created_at, indexed_at) SELECT 'at://did:plc:fill' || md5((i %% 500000)::text) || '/app.bsky.feed.repost/' || md5(i::text), 'did:plc:fill' || md5((i %% 500000)::text), 'at://did:plc:fill' || md5(((i * 7) %% 500000)::text) || '/app.bsky.feed.post/' || md5((i * 17)::text), now(), now() FROM generate_series(1, %d) i`, p(0.08)),
			fmt.Sprintf(`INSERT INTO follows (uri, follower_did, following_did, created_at, indexed_at) SELECT 'at://did:plc:fill' || md5((i %% 500000)::text) || '/app.bsky.graph.follow/' || md5(i::text), 'did:plc:fill' || md5((i %% 500000)::text), 'did:plc:fill' || md5((i * 31)::text), now(), now() FROM generate_series(1, %d) i`, p(0.15)),
			fmt.Sprintf(`INSERT INTO blocks (uri, blocker_did, blocked_did, created_at, indexed_at) SELECT 'at://did:plc:fill' || md5((i %% 500000)::text) || '/app.bsky.graph.block/' || md5(i::text), 'did:plc:fill' || md5((i %% 500000)::text), 'did:plc:fill' || md5((i * 37)::text), now(), now() FROM generate_series(1, %d) i`, p(0.02)),
			`VACUUM ANALYZE`,
		}
		execAll(b, dsn, "prefill", stmts...)
		b.Logf("prefilled %d rows in %s", prefill, time.Since(t0).Round(time.Second))
	}
	return dsn
}

// newDatabaseFrom creates a fresh database as a copy of the template's.
func newDatabaseFrom(b *testing.B, template string) string {
	b.Helper()
	tname := dbName(template)
	name := fmt.Sprintf("%s_c%d", tname, time.Now().UnixNano()%1e9)
	// The copy leaves the template's pages dirty (PostgreSQL 15 copies through the WAL): write
	// them now, or a checkpoint writes them during whatever is timed next. The checkpoint
	// leaves them (and the copy's WAL, 7 GB for the 10M-row template) to the kernel to write
	// back: sync waits for that, or it slows the next timed run's WAL flushes at random (a
	// load, which commits every unit, more than the ceiling's six COPYs).
	execAll(b, adminDSN, "copy database", "CREATE DATABASE "+name+" TEMPLATE "+tname, "CHECKPOINT")
	syncDisks()
	b.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), adminDSN)
		if err == nil {
			c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	return strings.Replace(template, "/"+tname+"?", "/"+name+"?", 1)
}

func dbName(dsn string) string {
	s := dsn[strings.LastIndex(dsn, "/")+1:]
	return s[:strings.Index(s, "?")]
}

// loadedCounts sums what backfill_segments recorded: events, and rows written over all tables
// (each segment of a transaction records the transaction's rows).
func loadedCounts(b *testing.B, dsn string) (events, rows int64) {
	b.Helper()
	ctx := context.Background()
	conn := connect(b, dsn)
	defer conn.Close(ctx)
	err := conn.QueryRow(ctx, `SELECT coalesce(sum(events), 0)::bigint,
		coalesce((SELECT round(sum(((v->>'inserted')::bigint + coalesce((v->>'updated')::bigint, 0) + coalesce((v->>'deleted')::bigint, 0))::numeric / s.batch_segments))
		 FROM backfill_segments s, jsonb_each(s.rows_written) AS r(k, v)), 0)::bigint FROM backfill_segments`).Scan(&events, &rows)
	if err != nil {
		b.Fatalf("read load counts: %v", err)
	}
	return events, rows
}

var benchTables = []string{"users", "posts", "likes", "reposts", "follows", "blocks"}

// dumpTables reads the rows the load wrote (binary COPY), skipping prefilled ones.
func dumpTables(b *testing.B, dsn string) map[string][]byte {
	b.Helper()
	ctx := context.Background()
	conn := connect(b, dsn)
	defer conn.Close(ctx)
	out := map[string][]byte{}
	for _, t := range benchTables {
		key := "uri"
		if t == "users" {
			key = "did"
		}
		var buf bytes.Buffer
		q := fmt.Sprintf("COPY (SELECT * FROM %s WHERE %s NOT LIKE '%%did:plc:fill%%') TO STDOUT (FORMAT binary)", t, key)
		if _, err := conn.PgConn().CopyTo(ctx, &buf, q); err != nil {
			b.Fatalf("dump %s: %v", t, err)
		}
		out[t] = buf.Bytes()
	}
	return out
}

// copyTables COPYs the dumped rows into dsn's tables and returns the rows and the time taken.
func copyTables(b *testing.B, dsn string, dump map[string][]byte) (int64, time.Duration) {
	b.Helper()
	ctx := context.Background()
	conn := connect(b, dsn)
	defer conn.Close(ctx)
	var rows int64
	t0 := time.Now()
	for _, t := range benchTables {
		tag, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(dump[t]), fmt.Sprintf("COPY %s FROM STDIN (FORMAT binary)", t))
		if err != nil {
			b.Fatalf("copy %s: %v", t, err)
		}
		rows += tag.RowsAffected()
	}
	return rows, time.Since(t0)
}

// naiveLoad applies events one statement per row with autocommit, the way the replaced tool
// does, for at most d, and returns events and rows done and the time taken.
func naiveLoad(b *testing.B, dsn, dir string, d time.Duration) (events, rows int64, took time.Duration) {
	b.Helper()
	ctx := context.Background()
	conn := connect(b, dsn)
	defer conn.Close(ctx)
	segs, err := spool.ListSegments(dir)
	if err != nil {
		b.Fatal(err)
	}
	dec := decode.NewDecoder(decode.Options{})
	exec := func(sql string, args ...any) {
		tag, err := conn.Exec(ctx, sql, args...)
		if err != nil {
			b.Fatalf("naive %s: %v", sql, err)
		}
		rows += tag.RowsAffected()
	}
	ensure := func(did string, t time.Time) {
		exec(`INSERT INTO users (did, handle, created_at, indexed_at) VALUES ($1, 'handle.invalid', $2, $2) ON CONFLICT DO NOTHING`, did, t)
	}
	t0 := time.Now()
	for _, s := range segs {
		r, err := spool.OpenSegment(s.Path)
		if err != nil {
			b.Fatal(err)
		}
		for time.Since(t0) < d {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			ev, err := dec.Decode(rec.Frame)
			if err != nil {
				continue
			}
			events++
			t := ev.Time
			ensure(ev.DID, t)
			for _, op := range ev.Ops {
				table := map[decode.Collection]string{decode.CollectionPost: "posts", decode.CollectionLike: "likes",
					decode.CollectionRepost: "reposts", decode.CollectionFollow: "follows", decode.CollectionBlock: "blocks"}[op.Collection]
				if op.Action != decode.ActionCreate && table != "" {
					exec(`DELETE FROM `+table+` WHERE uri = $1`, op.URI)
				}
				switch {
				case op.Post != nil:
					p := op.Post
					exec(`INSERT INTO posts (uri, cid, author_did, text, parent_uri, root_uri, embed, facets, tags, created_at, indexed_at)
						VALUES ($1, $2, $3, $4, nullif($5, ''), nullif($6, ''), $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`,
						p.URI, p.CID, p.AuthorDID, p.Text, p.ParentURI, p.RootURI, jsonArg(p.Embed), jsonArg(p.Facets), string(p.Tags), p.CreatedAt, t)
				case op.Like != nil:
					ensure(strings.SplitN(strings.TrimPrefix(op.Like.PostURI, "at://"), "/", 2)[0], t)
					exec(`INSERT INTO `+table+` (uri, user_did, post_uri, created_at, indexed_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
						op.Like.URI, op.Like.UserDID, op.Like.PostURI, op.Like.CreatedAt, t)
				case op.Follow != nil:
					ensure(op.Follow.SubjectDID, t)
					cols := "follower_did, following_did"
					if table == "blocks" {
						cols = "blocker_did, blocked_did"
					}
					exec(`INSERT INTO `+table+` (uri, `+cols+`, created_at, indexed_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
						op.Follow.URI, op.Follow.ActorDID, op.Follow.SubjectDID, op.Follow.CreatedAt, t)
				case op.Profile != nil:
					exec(`UPDATE users SET display_name = $2, description = $3, avatar_url = $4, banner_url = $5, profile_record = $6 WHERE did = $1`,
						op.Profile.DID, op.Profile.DisplayName, op.Profile.Description, op.Profile.AvatarCID, op.Profile.BannerCID, jsonArg(op.Profile.Record))
				}
			}
			if ev.Handle != nil {
				exec(`UPDATE users SET handle = $2 WHERE did = $1`, ev.DID, *ev.Handle)
			}
		}
		r.Close()
		if time.Since(t0) >= d {
			break
		}
	}
	return events, rows, time.Since(t0)
}

func jsonArg(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}
