package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backfill/backfill/relaytest"
)

const adminDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// newDatabase creates a fresh database for one test and returns its URL; it is dropped after.
// Tests fail (never skip) when PostgreSQL is unreachable.
func newDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		t.Fatalf("PostgreSQL is not reachable at 127.0.0.1:5432 as user postgres (%v).\n"+
			"Start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start (or run .ci/run, which starts it)", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("bf_main_%d_%d", time.Now().UnixNano()%1e9, rand.IntN(1e6))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, adminDSN)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return "postgres://postgres@127.0.0.1:5432/" + name + "?sslmode=disable"
}

// connect opens a connection to dsn, failing the test when it cannot; the caller closes it.
func connect(tb testing.TB, dsn string) *pgx.Conn {
	tb.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	return conn
}

// dumpDB reads every target table into the model's shape.
func dumpDB(t testing.TB, dsn string) *relaytest.Model {
	t.Helper()
	ctx := context.Background()
	conn := connect(t, dsn)
	defer conn.Close(ctx)
	m := relaytest.NewModel()
	query := func(sql string, scan func(pgx.Rows) error) {
		t.Helper()
		rows, err := conn.Query(ctx, sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				t.Fatalf("scan %s: %v", sql, err)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	query(`SELECT did, handle, display_name, description, avatar_url, banner_url, pinned_post::text, profile_record::text, created_at, indexed_at FROM users`, func(r pgx.Rows) error {
		var u relaytest.UserRow
		var pinned, rec *string
		if err := r.Scan(&u.DID, &u.Handle, &u.DisplayName, &u.Description, &u.AvatarURL, &u.BannerURL, &pinned, &rec, &u.CreatedAt, &u.IndexedAt); err != nil {
			return err
		}
		u.PinnedPost, u.ProfileRecord = jsonBytes(pinned), jsonBytes(rec)
		m.Users[u.DID] = u
		return nil
	})
	query(`SELECT uri, cid, author_did, text, coalesce(parent_uri, ''), coalesce(root_uri, ''), embed::text, facets::text, tags::text, created_at, indexed_at FROM posts`, func(r pgx.Rows) error {
		var p relaytest.PostRow
		var embed, facets *string
		var tags string
		if err := r.Scan(&p.URI, &p.CID, &p.AuthorDID, &p.Text, &p.ParentURI, &p.RootURI, &embed, &facets, &tags, &p.CreatedAt, &p.IndexedAt); err != nil {
			return err
		}
		p.Embed, p.Facets, p.Tags = jsonBytes(embed), jsonBytes(facets), []byte(tags)
		m.Posts[p.URI] = p
		return nil
	})
	for _, tbl := range []struct {
		name string
		dst  map[string]relaytest.SubjectRow
	}{{"likes", m.Likes}, {"reposts", m.Reposts}} {
		query(`SELECT uri, user_did, post_uri, created_at, indexed_at FROM `+tbl.name, func(r pgx.Rows) error {
			var s relaytest.SubjectRow
			if err := r.Scan(&s.URI, &s.UserDID, &s.PostURI, &s.CreatedAt, &s.IndexedAt); err != nil {
				return err
			}
			tbl.dst[s.URI] = s
			return nil
		})
	}
	for _, tbl := range []struct {
		sql string
		dst map[string]relaytest.GraphRow
	}{
		{`SELECT uri, follower_did, following_did, created_at, indexed_at FROM follows`, m.Follows},
		{`SELECT uri, blocker_did, blocked_did, created_at, indexed_at FROM blocks`, m.Blocks},
	} {
		query(tbl.sql, func(r pgx.Rows) error {
			var g relaytest.GraphRow
			if err := r.Scan(&g.URI, &g.ActorDID, &g.SubjectDID, &g.CreatedAt, &g.IndexedAt); err != nil {
				return err
			}
			tbl.dst[g.URI] = g
			return nil
		})
	}
	query(`SELECT did, active, status, seq, time FROM backfill_accounts`, func(r pgx.Rows) error {
		var a relaytest.AccountRow
		if err := r.Scan(&a.DID, &a.Active, &a.Status, &a.Seq, &a.Time); err != nil {
			return err
		}
		m.Accounts[a.DID] = a
		return nil
	})
	var cursor *string
	var lastTime *time.Time
	err := conn.QueryRow(ctx, `SELECT cursor, last_event_time FROM firehose_cursor WHERE service = 'backfill'`).Scan(&cursor, &lastTime)
	if err == nil && cursor != nil {
		fmt.Sscan(*cursor, &m.LastSeq)
		if lastTime != nil {
			m.LastTime = *lastTime
		}
	}
	return m
}

func jsonBytes(s *string) []byte {
	if s == nil {
		return nil
	}
	return []byte(*s)
}

// compareModel fails the test with the first differences between the database and the model.
func compareModel(t testing.TB, got, want *relaytest.Model) {
	t.Helper()
	if diffs := diffModel(got, want); len(diffs) > 0 {
		t.Fatalf("database differs from the model (%d users, %d posts, %d likes, %d follows in the model):\n  %s",
			len(want.Users), len(want.Posts), len(want.Likes), len(want.Follows), strings.Join(diffs, "\n  "))
	}
}

// diffModel lists the first differences between the database and the model.
func diffModel(got, want *relaytest.Model) []string {
	var diffs []string
	add := func(format string, args ...any) {
		if len(diffs) < 25 {
			diffs = append(diffs, fmt.Sprintf(format, args...))
		}
	}
	cmpMap(add, "users", got.Users, want.Users, normUser)
	cmpMap(add, "posts", got.Posts, want.Posts, normPost)
	cmpMap(add, "likes", got.Likes, want.Likes, normSubject)
	cmpMap(add, "reposts", got.Reposts, want.Reposts, normSubject)
	cmpMap(add, "follows", got.Follows, want.Follows, normGraph)
	cmpMap(add, "blocks", got.Blocks, want.Blocks, normGraph)
	cmpMap(add, "backfill_accounts", got.Accounts, want.Accounts, func(a relaytest.AccountRow) any {
		a.Time = ts(a.Time)
		return a
	})
	if got.LastSeq != want.LastSeq {
		add("firehose_cursor: cursor %d, want %d", got.LastSeq, want.LastSeq)
	}
	return diffs
}

func cmpMap[V any](add func(string, ...any), table string, got, want map[string]V, norm func(V) any) {
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			add("%s: missing %s", table, k)
		case !wok:
			add("%s: unexpected %s", table, k)
		default:
			if gn, wn := norm(g), norm(w); !reflect.DeepEqual(gn, wn) {
				add("%s %s:\n      got  %+v\n      want %+v", table, k, gn, wn)
			}
		}
	}
}

func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// normJSON turns JSON into a comparable value (nil stays nil).
func normJSON(b []byte) any {
	if b == nil {
		return nil
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return "invalid JSON: " + string(b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func normUser(u relaytest.UserRow) any {
	return []any{u.Handle, u.DisplayName, u.Description, u.AvatarURL, u.BannerURL,
		normJSON(u.PinnedPost), normJSON(u.ProfileRecord), ts(u.CreatedAt), ts(u.IndexedAt)}
}

func normPost(p relaytest.PostRow) any {
	return []any{p.CID, p.AuthorDID, p.Text, p.ParentURI, p.RootURI, normJSON(p.Embed), normJSON(p.Facets),
		normJSON(p.Tags), ts(p.CreatedAt), ts(p.IndexedAt)}
}

func normSubject(s relaytest.SubjectRow) any {
	return []any{s.UserDID, s.PostURI, ts(s.CreatedAt), ts(s.IndexedAt)}
}

func normGraph(g relaytest.GraphRow) any {
	return []any{g.ActorDID, g.SubjectDID, ts(g.CreatedAt), ts(g.IndexedAt)}
}
