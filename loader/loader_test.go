package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backfill/backfill/decode"
	"github.com/jackc/pgx/v5"
)

func TestSchema(t *testing.T) {
	t.Parallel()
	t.Run("creates missing tables and indexes", func(t *testing.T) {
		t.Parallel()
		url := testDB(t)
		openLoader(t, Config{DatabaseURL: url})
		c := dbConn(t, url)
		got := query(t, c, `SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)
		want := []string{"backfill_accounts", "backfill_loader", "backfill_pending", "backfill_segments", "blocks", "firehose_cursor", "follows", "likes", "posts", "reposts", "users"}
		if !slices.Equal(got, want) {
			t.Errorf("tables = %v, want %v", got, want)
		}
		idx := query(t, c, `SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'`)
		for _, ix := range indexes {
			if !slices.Contains(idx, ix.name) {
				t.Errorf("index %s missing", ix.name)
			}
		}
		cols := query(t, c, `SELECT column_name || ' ' || data_type || ' ' || coalesce(character_maximum_length::text, '-') FROM information_schema.columns WHERE table_name = 'likes' ORDER BY ordinal_position`)
		wantCols := []string{"uri character varying 512", "user_did character varying 255", "post_uri character varying 512", "created_at timestamp without time zone -", "indexed_at timestamp without time zone -"}
		if !slices.Equal(cols, wantCols) {
			t.Errorf("likes columns = %v, want %v", cols, wantCols)
		}
	})
	t.Run("leaves an existing table with extra columns untouched", func(t *testing.T) {
		t.Parallel()
		url := testDB(t)
		c := dbConn(t, url)
		exec(t, c, `CREATE TABLE users (did varchar(255) PRIMARY KEY, handle varchar(255) NOT NULL, display_name varchar(255), avatar_url text, banner_url text, description text, profile_record jsonb, pinned_post jsonb, created_at timestamp NOT NULL DEFAULT now(), indexed_at timestamp NOT NULL DEFAULT now(), karma integer NOT NULL DEFAULT 7, CONSTRAINT users_karma_check CHECK (karma > 0))`)
		exec(t, c, `INSERT INTO users (did, handle, karma) VALUES ($1, 'old.handle', 42)`, alice)
		dir := t.TempDir()
		writeSpool(t, dir, []tEvent{
			{seq: 1, time: at(1), kind: decode.KindIdentity, did: alice, handle: sp("new.handle")},
			{seq: 2, time: at(2), kind: decode.KindIdentity, did: bob, handle: sp("bob.handle")},
		})
		load(t, Config{DatabaseURL: url}, dir)
		got := query(t, c, `SELECT did || ' ' || handle || ' ' || karma FROM users ORDER BY did`)
		want := []string{alice + " new.handle 42", bob + " bob.handle 7"}
		if !slices.Equal(got, want) {
			t.Errorf("users = %v, want %v", got, want)
		}
		if got := query(t, c, `SELECT conname::text FROM pg_constraint WHERE conrelid = 'users'::regclass AND contype = 'c'`); !slices.Equal(got, []string{"users_karma_check"}) {
			t.Errorf("constraints = %v, want the user's check kept", got)
		}
		if got := query(t, c, `SELECT column_name::text FROM information_schema.columns WHERE table_name = 'users' AND column_name IN ('karma', 'search_vector')`); !slices.Equal(got, []string{"karma"}) {
			t.Errorf("columns = %v, want karma kept and no search_vector added", got)
		}
	})
	t.Run("a missing column is an error naming table and column", func(t *testing.T) {
		t.Parallel()
		url := testDB(t)
		c := dbConn(t, url)
		exec(t, c, `CREATE TABLE likes (uri varchar(512) PRIMARY KEY, post_uri varchar(512) NOT NULL, created_at timestamp NOT NULL, indexed_at timestamp NOT NULL)`)
		_, err := Open(context.Background(), Config{DatabaseURL: url})
		if err == nil {
			t.Fatal("Open succeeded, want an error")
		}
		if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "table likes has no column user_did") {
			t.Errorf("error = %v, want ErrSchema naming likes and user_did", err)
		}
		if got := query(t, c, `SELECT column_name::text FROM information_schema.columns WHERE table_name = 'likes' ORDER BY ordinal_position`); !slices.Equal(got, []string{"uri", "post_uri", "created_at", "indexed_at"}) {
			t.Errorf("likes columns = %v: the table was altered", got)
		}
	})
	t.Run("an equivalent index under another name is reused", func(t *testing.T) {
		t.Parallel()
		url := testDB(t)
		c := dbConn(t, url)
		exec(t, c, `CREATE TABLE follows (uri varchar(512) PRIMARY KEY, follower_did varchar(255) NOT NULL, following_did varchar(255) NOT NULL, created_at timestamp NOT NULL, indexed_at timestamp NOT NULL DEFAULT now())`)
		exec(t, c, `CREATE UNIQUE INDEX my_follow_pair ON follows (follower_did, following_did)`)
		openLoader(t, Config{DatabaseURL: url})
		got := query(t, c, `SELECT indexname::text FROM pg_indexes WHERE tablename = 'follows' ORDER BY 1`)
		want := []string{"follows_pkey", "idx_follows_follower", "idx_follows_following", "my_follow_pair"}
		if !slices.Equal(got, want) {
			t.Errorf("follows indexes = %v, want %v", got, want)
		}
	})
	t.Run("a table without its unique key is an error", func(t *testing.T) {
		t.Parallel()
		url := testDB(t)
		c := dbConn(t, url)
		exec(t, c, `CREATE TABLE posts (uri varchar(512), cid varchar(255) NOT NULL, author_did varchar(255) NOT NULL, text text NOT NULL, parent_uri varchar(512), root_uri varchar(512), embed jsonb, facets jsonb, tags jsonb NOT NULL DEFAULT '[]', created_at timestamp NOT NULL, indexed_at timestamp NOT NULL DEFAULT now())`)
		_, err := Open(context.Background(), Config{DatabaseURL: url})
		if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "posts") || !strings.Contains(err.Error(), "(uri)") {
			t.Errorf("error = %v, want ErrSchema naming posts (uri)", err)
		}
	})
}

// likeEvents returns n commits that each like a distinct post, with some unlikes and
// re-likes, for loads whose result is easy to predict from the model.
func likeEvents(n int, firstSeq int64) []tEvent {
	var evs []tEvent
	for i := range n {
		seq := firstSeq + int64(i)
		did := fmt.Sprintf("did:plc:u%d", i%7)
		switch i % 5 {
		case 3:
			evs = append(evs, commitEv(seq, did, op("delete", nsLike, fmt.Sprintf("l%d", i-1), "")))
		default:
			evs = append(evs, commitEv(seq, did,
				op("create", nsLike, fmt.Sprintf("l%d", i), post(bob, fmt.Sprintf("p%d", i%11))),
				postOp("create", fmt.Sprintf("p%d", i), "hello")))
		}
	}
	return evs
}

func TestIdempotent(t *testing.T) {
	t.Parallel()
	t.Run("loading the same spool twice changes nothing", func(t *testing.T) {
		t.Parallel()
		url := testDB(t)
		dir := t.TempDir()
		evs := likeEvents(60, 1)
		writeSpool(t, dir, evs, 9, 19, 29, 39)
		cfg := Config{DatabaseURL: url, BatchSize: 2}
		l := openLoader(t, cfg)
		first, err := l.Run(context.Background(), dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := dbConn(t, url)
		before := dumpDB(t, c)
		stamp := query(t, c, `SELECT updated_at::text FROM firehose_cursor`)
		second, err := l.Run(context.Background(), dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		third := load(t, cfg, dir) // a new loader reads the bookkeeping from the database
		if d := diffDumps(dumpDB(t, c), before); d != "" {
			t.Errorf("second load changed the database:\n%s", d)
		}
		if got := query(t, c, `SELECT updated_at::text FROM firehose_cursor`); !slices.Equal(got, stamp) {
			t.Errorf("firehose_cursor.updated_at = %v, want %v (untouched)", got, stamp)
		}
		if first.SegmentsLoaded != 5 || first.Transactions != 3 {
			t.Errorf("first run: %d segments in %d transactions, want 5 in 3", first.SegmentsLoaded, first.Transactions)
		}
		for i, s := range []Summary{second, third} {
			if s.SegmentsLoaded != 0 || s.SegmentsSkipped != 5 || s.Transactions != 0 {
				t.Errorf("run %d: loaded %d skipped %d transactions %d, want 0, 5, 0", i+2, s.SegmentsLoaded, s.SegmentsSkipped, s.Transactions)
			}
		}
		m := newModel()
		m.applyAll(evs)
		if d := diffDumps(before, m.dump()); d != "" {
			t.Errorf("database differs from the sequential model:\n%s", d)
		}
	})
	t.Run("a re-fetched spool with other boundaries adds only new events", func(t *testing.T) {
		t.Parallel()
		url := testDB(t)
		evs := likeEvents(100, 1)
		dirA, dirB := t.TempDir(), t.TempDir()
		writeSpool(t, dirA, evs[:60], 24, 49)
		writeSpool(t, dirB, evs[30:], 4, 9, 39, 59) // segments 31-35, 36-40, 41-70, 71-90, 91-100
		cfg := Config{DatabaseURL: url}
		load(t, cfg, dirA)
		sum := load(t, cfg, dirB)
		c := dbConn(t, url)
		m := newModel()
		m.applyAll(evs)
		if d := diffDumps(dumpDB(t, c), m.dump()); d != "" {
			t.Errorf("database differs from the sequential model:\n%s", d)
		}
		if sum.SegmentsSkipped != 2 || sum.SegmentsLoaded != 3 {
			t.Errorf("second spool: loaded %d skipped %d segments, want 3 and 2", sum.SegmentsLoaded, sum.SegmentsSkipped)
		}
		if got := sum.Skipped[ReasonAlreadyLoaded]; got != 20 {
			t.Errorf("already_loaded = %d, want 20 (seqs 41-60 of the overlapping segment)", got)
		}
		if got := query(t, c, `SELECT cursor FROM firehose_cursor`); !slices.Equal(got, []string{"100"}) {
			t.Errorf("cursor = %v, want 100", got)
		}
	})
}

// backendPID returns the pid of the loader's server process.
func backendPID(l *Loader) uint32 { return l.conn.PgConn().PID() }

func TestCrash(t *testing.T) {
	t.Parallel()
	evs := likeEvents(80, 1)
	cuts := []int{19, 39, 59}
	want := func() map[string][]string { m := newModel(); m.applyAll(evs); return m.dump() }()

	t.Run("a connection killed before commit is retried and nothing half is visible", func(t *testing.T) {
		t.Parallel()
		url := testDB(t)
		dir := t.TempDir()
		writeSpool(t, dir, evs, cuts...)
		l := openLoader(t, Config{DatabaseURL: url, BatchSize: 1, Retry: RetryPolicy{MinDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}})
		c := dbConn(t, url)
		var calls atomic.Int32
		var visible []string
		l.beforeCommit = func(ctx context.Context, conn *pgx.Conn) error {
			n := calls.Add(1)
			if n != 2 && n != 3 {
				return nil
			}
			// The second segment is written but not committed: another session sees only the first.
			visible = append(visible, query(t, c, `SELECT count(*)::text FROM likes`)...)
			visible = append(visible, query(t, c, `SELECT count(*)::text FROM backfill_segments`)...)
			visible = append(visible, query(t, c, `SELECT coalesce(max(cursor), '-') FROM firehose_cursor`)...)
			exec(t, c, `SELECT pg_terminate_backend($1)`, conn.PgConn().PID())
			return nil
		}
		sum, err := l.Run(context.Background(), dir, nil)
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		if sum.Retries != 2 || sum.SegmentsLoaded != 4 {
			t.Errorf("retries %d, segments %d; want 2 and 4", sum.Retries, sum.SegmentsLoaded)
		}
		if wantVis := []string{"16", "1", "20", "16", "1", "20"}; !slices.Equal(visible, wantVis) {
			t.Errorf("visible before commit (likes, segments, cursor) = %v, want %v", visible, wantVis)
		}
		if d := diffDumps(dumpDB(t, c), want); d != "" {
			t.Errorf("database differs from the one-shot result:\n%s", d)
		}
	})
	t.Run("a cancelled run leaves whole segments and the next run completes", func(t *testing.T) {
		t.Parallel()
		url := testDB(t)
		dir := t.TempDir()
		writeSpool(t, dir, evs, cuts...)
		l := openLoader(t, Config{DatabaseURL: url, BatchSize: 1})
		ctx, cancel := context.WithCancel(context.Background())
		var calls atomic.Int32
		l.beforeCommit = func(context.Context, *pgx.Conn) error {
			if calls.Add(1) == 3 {
				cancel()
			}
			return nil
		}
		_, err := l.Run(ctx, dir, nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run error = %v, want context.Canceled", err)
		}
		c := dbConn(t, url)
		if got := query(t, c, `SELECT string_agg(last_seq::text, ',' ORDER BY last_seq) FROM backfill_segments`); !slices.Equal(got, []string{"20,40"}) {
			t.Errorf("loaded segments = %v, want 20,40", got)
		}
		if got := query(t, c, `SELECT count(*)::text FROM likes WHERE indexed_at > '2025-01-01 00:00:40'`); !slices.Equal(got, []string{"0"}) {
			t.Errorf("rows past the last committed segment: %v, want 0", got)
		}
		l.beforeCommit = nil
		sum, err := l.Run(context.Background(), dir, nil)
		if err != nil {
			t.Fatalf("second run: %v", err)
		}
		if sum.SegmentsLoaded != 2 || sum.SegmentsSkipped != 2 {
			t.Errorf("second run loaded %d skipped %d, want 2 and 2", sum.SegmentsLoaded, sum.SegmentsSkipped)
		}
		if d := diffDumps(dumpDB(t, c), want); d != "" {
			t.Errorf("database differs from the one-shot result:\n%s", d)
		}
	})
	t.Run("a connection lost between runs is reopened", func(t *testing.T) {
		t.Parallel()
		url := testDB(t)
		dirA, dirB := t.TempDir(), t.TempDir()
		writeSpool(t, dirA, evs[:40], 19)
		writeSpool(t, dirB, evs, cuts...)
		l := openLoader(t, Config{DatabaseURL: url})
		if _, err := l.Run(context.Background(), dirA, nil); err != nil {
			t.Fatal(err)
		}
		c := dbConn(t, url)
		exec(t, c, `SELECT pg_terminate_backend($1)`, backendPID(l))
		if _, err := l.Run(context.Background(), dirB, nil); err != nil {
			t.Fatalf("run after the connection was killed: %v", err)
		}
		if d := diffDumps(dumpDB(t, c), want); d != "" {
			t.Errorf("database differs from the one-shot result:\n%s", d)
		}
	})
	t.Run("a permanent error stops the run without retries", func(t *testing.T) {
		t.Parallel()
		url := testDB(t)
		dir := t.TempDir()
		writeSpool(t, dir, evs, cuts...)
		l := openLoader(t, Config{DatabaseURL: url})
		c := dbConn(t, url)
		// A trigger the loader cannot satisfy: every like insert fails.
		exec(t, c, `CREATE FUNCTION no_likes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no likes today'; END $$`)
		exec(t, c, `CREATE TRIGGER no_likes BEFORE INSERT ON likes FOR EACH ROW EXECUTE FUNCTION no_likes()`)
		sum, err := l.Run(context.Background(), dir, nil)
		if err == nil || !strings.Contains(err.Error(), "no likes today") {
			t.Fatalf("run error = %v, want the trigger's", err)
		}
		if sum.Retries != 0 {
			t.Errorf("retries = %d, want 0", sum.Retries)
		}
		if got := query(t, c, `SELECT count(*)::text FROM posts`); !slices.Equal(got, []string{"0"}) {
			t.Errorf("posts = %v, want 0: the failed transaction left rows", got)
		}
	})
}

func TestFollow(t *testing.T) {
	t.Parallel()
	url := testDB(t)
	dir := t.TempDir()
	evs := likeEvents(50, 1)
	writeSpool(t, dir, evs[:10])
	var done atomic.Bool
	go func() {
		for i := 10; i < 50; i += 10 {
			time.Sleep(200 * time.Millisecond)
			writeSpool(t, dir, evs[i:i+10])
		}
		done.Store(true)
	}()
	l := openLoader(t, Config{DatabaseURL: url})
	polls := 0
	sum, err := l.Run(context.Background(), dir, func() (bool, error) {
		polls++
		return done.Load(), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.SegmentsLoaded != 5 {
		t.Errorf("segments loaded = %d, want 5", sum.SegmentsLoaded)
	}
	if polls < 2 {
		t.Errorf("follow was called %d times, want at least 2", polls)
	}
	m := newModel()
	m.applyAll(evs)
	if d := diffDumps(dumpDB(t, dbConn(t, url)), m.dump()); d != "" {
		t.Errorf("database differs from the sequential model:\n%s", d)
	}
	st := l.Stats()
	if st.SegmentsDone.Load() != 5 || st.LastSeq.Load() != 50 || st.Frames.Load() != 50 || st.Rows[TableLikes].Load() == 0 {
		t.Errorf("stats: segments %d, last seq %d, frames %d, likes %d", st.SegmentsDone.Load(), st.LastSeq.Load(), st.Frames.Load(), st.Rows[TableLikes].Load())
	}
	if got, want := st.LastEventTime(), at(50); !got.Equal(want) {
		t.Errorf("stats last event time = %v, want %v", got, want)
	}
}

func TestAdvisoryLock(t *testing.T) {
	t.Parallel()
	url := testDB(t)
	first := openLoader(t, Config{DatabaseURL: url})
	_, err := Open(context.Background(), Config{DatabaseURL: url})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open error = %v, want ErrLocked", err)
	}
	if want := fmt.Sprintf("pid %d", backendPID(first)); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the holder (%s)", err, want)
	}
	first.Close()
	second, err := Open(context.Background(), Config{DatabaseURL: url})
	if err != nil {
		t.Fatalf("Open after the first loader closed: %v", err)
	}
	second.Close()
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{
		"postgres://loader:S3cret-pw@127.0.0.1:1/appview?sslmode=disable&connect_timeout=5",
		"host=127.0.0.1 port=1 user=loader password=S3cret-pw dbname=appview sslmode=disable connect_timeout=5",
	} {
		_, err := Open(context.Background(), Config{DatabaseURL: dsn})
		if err == nil {
			t.Fatalf("Open(%q) succeeded", dsn)
		}
		msg := err.Error()
		if strings.Contains(msg, "S3cret-pw") {
			t.Errorf("error leaks the password: %s", msg)
		}
		if !strings.Contains(msg, RedactDSN(dsn)) || !strings.Contains(msg, "xxxxx") {
			t.Errorf("error %q does not contain the redacted DSN %q", msg, RedactDSN(dsn))
		}
	}
}

func TestRedactDSN(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"postgres://u:pw@h:5432/db?sslmode=disable", "postgres://u:xxxxx@h:5432/db?sslmode=disable"},
		{"postgresql://u@h/db", "postgresql://u@h/db"},
		{"postgres://u:p%40ss@h/db?password=other&sslpassword=x", "postgres://u:xxxxx@h/db?password=xxxxx&sslpassword=xxxxx"},
		{"host=h user=u password=secret dbname=d", "host=h user=u password=xxxxx dbname=d"},
		{"host=h password = 'sec ret' dbname=d", "host=h password = xxxxx dbname=d"},
		{"password=secret", "password=xxxxx"},
		{"postgres://u:p w@h:bad port/db", "postgres://u:xxxxx@h:bad port/db"},
	}
	for _, tc := range cases {
		if got := RedactDSN(tc.in); got != tc.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"no database URL":  {},
		"negative workers": {DatabaseURL: "x", Workers: -1},
		"empty window":     {DatabaseURL: "x", Since: at(2), Until: at(1)},
		"bad collection":   {DatabaseURL: "x", Collections: []decode.Collection{decode.CollectionOther}},
	} {
		if _, err := Open(context.Background(), cfg); err == nil || !strings.HasPrefix(err.Error(), "loader: config") {
			t.Errorf("%s: Open error = %v, want a config error", name, err)
		}
	}
}

func TestConcurrentWriter(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		direct      directPolicy
		wantRetries int
		want        directCounts // of likes
	}{
		// The blind COPY waits on the other session's row and meets it once committed; the
		// probe then sees it, and the COPY of the other like goes through.
		{"blind COPY falls back to a probe", directAdaptive, 0, directCounts{fallbacks: 1}},
		// The probe cannot see the uncommitted row, so the COPY waits, meets it, and the likes
		// go through staging, whose anti-join then sees the row and skips it.
		{"probed COPY falls back to staging", directProbe, 0, directCounts{probed: 1, staged: 1}},
		// The anti-join saw no row, so the insert waits, meets it, and the unit is retried with
		// ON CONFLICT.
		{"anti-join insert retries with ON CONFLICT", directNever, 1, directCounts{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := testDB(t)
			l := openLoader(t, Config{DatabaseURL: url})
			l.direct = tc.direct
			dir := t.TempDir()
			likeURI := "at://" + alice + "/" + nsLike + "/l1"
			writeSpool(t, dir, []tEvent{
				commitEv(1, alice, op("create", nsLike, "l1", post(bob, "p1")), op("create", nsLike, "l2", post(bob, "p2"))),
			})
			// Another session inserts the same like and commits while the loader's insert waits on it.
			res := raceRun(t, l, url, dir, `INSERT INTO likes (uri, user_did, post_uri, created_at, indexed_at) VALUES ($1, $2, $3, '2020-01-01', '2020-01-01')`, likeURI, alice, post(bob, "p1"))
			watch := dbConn(t, url)
			if res.Retries != tc.wantRetries {
				t.Errorf("retries = %d, want %d", res.Retries, tc.wantRetries)
			}
			if got := l.directCounts[TableLikes]; got != tc.want {
				t.Errorf("direct COPY into likes: %+v, want %+v", got, tc.want)
			}
			if got, want := res.Rows[TableLikes], (RowCount{Inserted: 1}); got != want {
				t.Errorf("likes counted %+v, want %+v", got, want)
			}
			got := query(t, watch, `SELECT uri || ' ' || created_at FROM likes ORDER BY uri`)
			want := []string{likeURI + " 2020-01-01 00:00:00", "at://" + alice + "/" + nsLike + "/l2 2024-01-02 03:04:05.678"}
			if !slices.Equal(got, want) {
				t.Errorf("likes = %q, want %q", got, want)
			}
		})
	}
}

// raceRun runs l over dir while another session runs sql in a transaction that it commits
// once the loader waits on a lock, which must be the rows sql wrote.
func raceRun(t *testing.T, l *Loader, url, dir, sql string, args ...any) Summary {
	t.Helper()
	ctx := context.Background()
	other := dbConn(t, url)
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		t.Fatal(err)
	}
	type result struct {
		sum Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := l.Run(ctx, dir, nil)
		done <- result{sum, err}
	}()
	watch := dbConn(t, url)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		if err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'backfill-loader' AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the loader never waited on the other session's row")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatalf("run: %v", res.err)
	}
	return res.sum
}

// TestEventTimeCountedOnce checks that an event whose time does not parse is counted once, as
// what the loader did about it (time_fallback, or no_time when no earlier time exists), while
// a record's createdAt that does not parse stays bad_time.
func TestEventTimeCountedOnce(t *testing.T) {
	t.Parallel()
	url := testDB(t)
	dir := t.TempDir()
	noTime := commitEv(1, alice, op("create", nsLike, "l0", post(bob, "p0")))
	noTime.time = time.Time{}
	fallback := commitEv(3, alice, op("create", nsLike, "l1", post(bob, "p1")))
	fallback.time = time.Time{}
	badCreated := op("create", nsLike, "l2", post(bob, "p2"))
	badCreated.created = "yesterday"
	writeSpool(t, dir, []tEvent{noTime, commitEv(2, alice, badCreated), fallback})
	sum := load(t, Config{DatabaseURL: url}, dir)
	if got := sum.Skipped[ReasonNoTime]; got != 1 {
		t.Errorf("no_time %d, want 1 (%v)", got, sum.Skipped)
	}
	if got := sum.Repaired[ReasonTimeFallback]; got != 1 {
		t.Errorf("time_fallback %d, want 1 (%v)", got, sum.Repaired)
	}
	if got := sum.Repaired[decode.ReasonBadTime]; got != 1 {
		t.Errorf("bad_time %d, want 1 for the createdAt alone (%v)", got, sum.Repaired)
	}
}

func TestDebugLog(t *testing.T) {
	t.Parallel()
	url := testDB(t)
	dir := t.TempDir()
	writeSpool(t, dir, []tEvent{
		{seq: 1, bad: true},
		commitEv(2, alice, op("create", nsOther, "t1", "")),
	})
	var buf strings.Builder
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sum := load(t, Config{DatabaseURL: url, Logger: logger}, dir)
	out := buf.String()
	for _, want := range []string{"level=DEBUG msg=\"skipped input\" seq=1 reason=bad_frame", "seq=2 reason=other_collection subject=at://did:plc:alice/app.bsky.feed.threadgate/t1"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if sum.Skipped[decode.ReasonBadFrame] != 1 || sum.Skipped[decode.ReasonOtherCollection] != 1 || sum.LastSeq != 2 {
		t.Errorf("summary skipped %v last seq %d", sum.Skipped, sum.LastSeq)
	}
}
