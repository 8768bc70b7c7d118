package loader

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/backfill/backfill/decode"
	"github.com/bluesky-social/indigo/api/bsky"
	"github.com/jackc/pgx/v5"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// at is the event time of seq in hand-built tests.
func at(seq int64) time.Time { return t0.Add(time.Duration(seq) * time.Second) }

const (
	alice = "did:plc:alice"
	bob   = "did:plc:bob"
	carol = "did:plc:carol"
)

func post(did, rkey string) string { return "at://" + did + "/" + nsPost + "/" + rkey }

func commitEv(seq int64, did string, ops ...tOp) tEvent {
	return tEvent{seq: seq, time: at(seq), kind: decode.KindCommit, did: did, ops: ops}
}

func op(action, coll, rkey, subject string) tOp {
	return tOp{action: action, coll: coll, rkey: rkey, subject: subject}
}

func postOp(action, rkey, text string) tOp {
	return tOp{action: action, coll: nsPost, rkey: rkey, text: text}
}

func profileOp(action, name string) tOp {
	o := tOp{action: action, coll: nsProfile, rkey: "self"}
	if action != "delete" {
		o.displayName = &name
	}
	return o
}

func sp(s string) *string { return &s }

// query returns the rows of a one-column text query.
func query(tb testing.TB, c *pgx.Conn, sql string) []string {
	tb.Helper()
	rows, err := c.Query(context.Background(), sql)
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return out
}

func TestSemantics(t *testing.T) {
	t.Parallel()
	likeURI := func(did, rkey string) string { return "at://" + did + "/" + nsLike + "/" + rkey }
	cases := []struct {
		name   string
		evs    []tEvent
		cuts   []int // seal after these indexes
		cfg    func(*Config)
		checks map[string][]string // one-column query -> rows
	}{
		{
			name: "create then delete in one segment",
			evs: []tEvent{
				commitEv(1, alice, op("create", nsLike, "l1", post(bob, "p1"))),
				commitEv(2, alice, op("delete", nsLike, "l1", "")),
			},
			checks: map[string][]string{"SELECT uri FROM likes": nil},
		},
		{
			// An update is a delete then a create: a new record that gives no row leaves none.
			name: "updates whose new record does not decode, in the same segment",
			evs:  badUpdates(),
			checks: map[string][]string{
				"SELECT uri FROM posts":   {post(alice, "p2")},
				"SELECT uri FROM likes":   nil,
				"SELECT uri FROM follows": nil,
				"SELECT coalesce(display_name, 'NULL') FROM users WHERE did = 'did:plc:alice'": {"NULL"},
			},
		},
		{
			name: "updates whose new record does not decode, in a later segment",
			evs:  badUpdates(),
			cuts: []int{0},
			checks: map[string][]string{
				"SELECT uri FROM posts":   {post(alice, "p2")},
				"SELECT uri FROM likes":   nil,
				"SELECT uri FROM follows": nil,
				"SELECT coalesce(display_name, 'NULL') FROM users WHERE did = 'did:plc:alice'": {"NULL"},
			},
		},
		{
			name: "delete of a row created in an earlier segment",
			evs: []tEvent{
				commitEv(1, alice, op("create", nsLike, "l1", post(bob, "p1"))),
				commitEv(2, alice, op("delete", nsLike, "l1", "")),
			},
			cuts:   []int{0},
			checks: map[string][]string{"SELECT uri FROM likes": nil},
		},
		{
			name: "create with the pair of a pre-existing row, then delete that row",
			evs: []tEvent{
				commitEv(1, alice, op("create", nsLike, "l1", post(bob, "p1"))),
				commitEv(2, alice, op("create", nsLike, "l2", post(bob, "p1"))),
				commitEv(3, alice, op("delete", nsLike, "l1", "")),
			},
			cuts:   []int{0},
			checks: map[string][]string{"SELECT uri FROM likes": nil},
		},
		{
			// The repost cut changes once the pre-existing pairs are read: its deletes and those
			// of the tables after it are undone and sent again, the likes' and the posts' stay,
			// and the probes of the tables whose cut stood still hold (r5 meets r4's pair).
			name: "one pair table's recut, among deletes of pre-existing rows in every table",
			evs: []tEvent{
				commitEv(1, alice, op("create", nsLike, "l1", post(bob, "p1")), op("create", nsLike, "l9", post(bob, "p9")),
					op("create", nsRepost, "r1", post(bob, "p1")), op("create", nsRepost, "r4", post(bob, "p3")),
					op("create", nsFollow, "f1", bob), op("create", nsBlock, "b1", carol), postOp("create", "px", "x")),
				commitEv(2, alice, op("create", nsLike, "l2", post(bob, "p2")), op("delete", nsLike, "l1", "")),
				commitEv(3, alice, op("create", nsRepost, "r2", post(bob, "p1")), op("delete", nsRepost, "r1", "")),
				commitEv(4, alice, op("create", nsRepost, "r5", post(bob, "p3"))),
				commitEv(5, alice, op("create", nsFollow, "f2", carol), op("delete", nsFollow, "f1", "")),
				commitEv(6, alice, op("create", nsBlock, "b2", bob), op("delete", nsBlock, "b1", "")),
				commitEv(7, alice, postOp("delete", "px", "")),
			},
			cuts: []int{0},
			// The rows must pre-exist: no create is left out for the deletes that follow it.
			cfg: func(c *Config) { c.BatchSize = 1; c.NoDeleteHints = true },
			checks: map[string][]string{
				"SELECT uri FROM likes ORDER BY uri":   {likeURI(alice, "l2"), likeURI(alice, "l9")},
				"SELECT uri FROM reposts ORDER BY uri": {"at://" + alice + "/" + nsRepost + "/r4"},
				"SELECT uri FROM follows":              {"at://" + alice + "/" + nsFollow + "/f2"},
				"SELECT uri FROM blocks":               {"at://" + alice + "/" + nsBlock + "/b2"},
				"SELECT uri FROM posts":                nil,
				"SELECT rows_written::text FROM backfill_segments ORDER BY first_seq DESC LIMIT 1": {
					`{"likes": {"deleted": 1, "inserted": 1}, "posts": {"deleted": 1, "inserted": 0}, "blocks": {"deleted": 1, "inserted": 1}, "follows": {"deleted": 1, "inserted": 1}, "reposts": {"deleted": 1, "inserted": 0}}`},
			},
		},
		{
			name: "create with the pair of a row created in the same segment, then delete that row",
			evs: []tEvent{
				commitEv(1, alice, op("create", nsFollow, "f1", bob)),
				commitEv(2, alice, op("create", nsFollow, "f2", bob)),
				commitEv(3, alice, op("delete", nsFollow, "f1", "")),
			},
			checks: map[string][]string{"SELECT uri FROM follows": nil},
		},
		{
			name: "delete then create with that pair",
			evs: []tEvent{
				commitEv(1, alice, op("create", nsLike, "l1", post(bob, "p1"))),
				commitEv(2, alice, op("delete", nsLike, "l1", "")),
				commitEv(3, alice, op("create", nsLike, "l2", post(bob, "p1"))),
			},
			cuts:   []int{0},
			checks: map[string][]string{"SELECT uri FROM likes": {likeURI(alice, "l2")}},
		},
		{
			name: "re-create after delete",
			evs: []tEvent{
				commitEv(1, alice, op("create", nsBlock, "b1", bob)),
				commitEv(2, alice, op("delete", nsBlock, "b1", "")),
				commitEv(3, alice, op("create", nsBlock, "b1", carol)),
			},
			checks: map[string][]string{"SELECT uri || ' ' || blocked_did || ' ' || indexed_at FROM blocks": {"at://" + alice + "/" + nsBlock + "/b1 " + carol + " 2025-01-01 00:00:03"}},
		},
		{
			name: "re-create after delete across segments",
			evs: []tEvent{
				commitEv(1, alice, op("create", nsRepost, "r1", post(bob, "p1"))),
				commitEv(2, alice, op("delete", nsRepost, "r1", "")),
				commitEv(3, alice, op("create", nsRepost, "r1", post(carol, "p2"))),
			},
			cuts:   []int{0, 1},
			checks: map[string][]string{"SELECT post_uri FROM reposts": {post(carol, "p2")}},
		},
		{
			name: "duplicate create keeps the first row",
			evs: []tEvent{
				commitEv(1, alice, postOp("create", "p1", "first")),
				commitEv(2, alice, postOp("create", "p1", "second")),
			},
			checks: map[string][]string{"SELECT text || ' ' || indexed_at FROM posts": {"first 2025-01-01 00:00:01"}},
		},
		{
			name: "update of a row never created",
			evs: []tEvent{
				commitEv(1, alice, postOp("update", "p1", "edited")),
			},
			checks: map[string][]string{"SELECT text FROM posts": {"edited"}},
		},
		{
			name: "update replaces the row",
			evs: []tEvent{
				commitEv(1, alice, postOp("create", "p1", "v1")),
				commitEv(2, alice, postOp("update", "p1", "v2")),
				commitEv(3, alice, postOp("create", "p1", "v3")),
			},
			checks: map[string][]string{"SELECT text || ' ' || indexed_at FROM posts": {"v2 2025-01-01 00:00:02"}},
		},
		{
			name: "update of a like takes the new pair and frees the old one",
			evs: []tEvent{
				commitEv(1, alice, op("create", nsLike, "l1", post(bob, "p1"))),
				commitEv(2, alice, op("update", nsLike, "l1", post(bob, "p2"))),
				commitEv(3, alice, op("create", nsLike, "l2", post(bob, "p1"))),
			},
			checks: map[string][]string{"SELECT uri || ' ' || post_uri FROM likes ORDER BY uri": {
				likeURI(alice, "l1") + " " + post(bob, "p2"),
				likeURI(alice, "l2") + " " + post(bob, "p1"),
			}},
		},
		{
			name: "post delete then re-create in one segment",
			evs: []tEvent{
				commitEv(1, alice, postOp("create", "p1", "v1")),
				commitEv(2, alice, postOp("delete", "p1", "")),
				commitEv(3, alice, postOp("create", "p1", "v3")),
			},
			cuts:   []int{0},
			checks: map[string][]string{"SELECT text FROM posts": {"v3"}},
		},
		{
			name: "latest profile wins across segments",
			evs: []tEvent{
				commitEv(1, alice, profileOp("create", "Alice 1")),
				commitEv(2, alice, profileOp("update", "Alice 2")),
				commitEv(3, alice, profileOp("update", "Alice 3")),
			},
			cuts:   []int{0},
			checks: map[string][]string{"SELECT display_name || ' ' || (profile_record->>'displayName') FROM users": {"Alice 3 Alice 3"}},
		},
		{
			name: "profile delete clears",
			evs: []tEvent{
				commitEv(1, alice, profileOp("create", "Alice")),
				commitEv(2, alice, profileOp("delete", "")),
			},
			cuts: []int{0},
			checks: map[string][]string{
				"SELECT did || ' ' || handle || ' ' || (display_name IS NULL AND profile_record IS NULL AND description IS NULL AND pinned_post IS NULL)::text FROM users": {alice + " handle.invalid true"},
			},
		},
		{
			name: "identity without handle keeps the handle",
			evs: []tEvent{
				{seq: 1, time: at(1), kind: decode.KindIdentity, did: alice, handle: sp("Alice.Example.COM")},
				{seq: 2, time: at(2), kind: decode.KindIdentity, did: alice},
				{seq: 3, time: at(3), kind: decode.KindIdentity, did: bob},
			},
			cuts: []int{0},
			checks: map[string][]string{"SELECT did || ' ' || handle FROM users ORDER BY did": {
				alice + " alice.example.com", bob + " handle.invalid",
			}},
		},
		{
			name: "last handle wins within a segment",
			evs: []tEvent{
				{seq: 1, time: at(1), kind: decode.KindIdentity, did: alice, handle: sp("one.test")},
				{seq: 2, time: at(2), kind: decode.KindIdentity, did: alice, handle: sp("two.test")},
			},
			checks: map[string][]string{"SELECT handle FROM users": {"two.test"}},
		},
		{
			name: "every named DID gets a user row at its first event's time",
			evs: []tEvent{
				commitEv(1, alice, op("create", nsFollow, "f1", bob), op("create", nsLike, "l1", post(carol, "p1"))),
				{seq: 2, time: at(2), kind: decode.KindSync, did: "did:plc:dave"},
				{seq: 3, time: at(3), kind: decode.KindAccount, did: "did:plc:erin", active: false, status: sp("takendown")},
				commitEv(4, "did:plc:frank", op("create", nsBlock, "b1", bob)),
			},
			cuts: []int{1},
			checks: map[string][]string{
				"SELECT did || ' ' || handle || ' ' || created_at || ' ' || indexed_at FROM users ORDER BY did": {
					alice + " handle.invalid 2025-01-01 00:00:01 2025-01-01 00:00:01",
					bob + " handle.invalid 2025-01-01 00:00:01 2025-01-01 00:00:01",
					carol + " handle.invalid 2025-01-01 00:00:01 2025-01-01 00:00:01",
					"did:plc:dave handle.invalid 2025-01-01 00:00:02 2025-01-01 00:00:02",
					"did:plc:erin handle.invalid 2025-01-01 00:00:03 2025-01-01 00:00:03",
					"did:plc:frank handle.invalid 2025-01-01 00:00:04 2025-01-01 00:00:04",
				},
				"SELECT did || ' ' || active || ' ' || status || ' ' || seq FROM backfill_accounts": {"did:plc:erin false takendown 3"},
			},
		},
		{
			name: "last account event wins",
			evs: []tEvent{
				{seq: 1, time: at(1), kind: decode.KindAccount, did: alice, active: false, status: sp("suspended")},
				{seq: 2, time: at(2), kind: decode.KindAccount, did: alice, active: true},
				{seq: 3, time: at(3), kind: decode.KindAccount, did: bob, active: false, status: sp("deactivated")},
				{seq: 4, time: at(4), kind: decode.KindAccount, did: bob, active: false, status: sp("deleted")},
			},
			cuts: []int{2},
			checks: map[string][]string{"SELECT did || ' ' || active || ' ' || status || ' ' || seq || ' ' || time FROM backfill_accounts ORDER BY did": {
				alice + " true active 2 2025-01-01 00:00:02", bob + " false deleted 4 2025-01-01 00:00:04",
			}},
		},
		{
			name: "events outside the window are skipped",
			evs: []tEvent{
				commitEv(1, alice, postOp("create", "p1", "too early")),
				commitEv(2, alice, postOp("create", "p2", "in")),
				commitEv(3, alice, postOp("create", "p3", "too late")),
			},
			cfg: func(c *Config) { c.Since, c.Until = at(2), at(3) },
			checks: map[string][]string{
				"SELECT text FROM posts":                            {"in"},
				"SELECT did FROM users":                             {alice},
				"SELECT cursor FROM firehose_cursor":                {"3"},
				"SELECT last_event_time::text FROM firehose_cursor": {"2025-01-01 00:00:03"},
			},
		},
		{
			name: "collections not selected are skipped",
			evs: []tEvent{
				commitEv(1, alice, postOp("create", "p1", "hi"), op("create", nsLike, "l1", post(bob, "p1")), op("create", nsFollow, "f1", carol)),
			},
			cfg: func(c *Config) { c.Collections = []decode.Collection{decode.CollectionLike} },
			checks: map[string][]string{
				"SELECT uri FROM likes":              {likeURI(alice, "l1")},
				"SELECT uri FROM posts":              nil,
				"SELECT uri FROM follows":            nil,
				"SELECT did FROM users ORDER BY did": {alice, bob},
			},
		},
		{
			name: "an event without a time takes the previous event's time",
			evs: []tEvent{
				commitEv(5, alice, postOp("create", "p1", "a")),
				{seq: 6, kind: decode.KindCommit, did: bob, ops: []tOp{postOp("create", "p2", "b")}},
			},
			cuts: []int{0},
			checks: map[string][]string{
				"SELECT text || ' ' || indexed_at FROM posts ORDER BY text":    {"a 2025-01-01 00:00:05", "b 2025-01-01 00:00:05"},
				"SELECT did || ' ' || created_at FROM users ORDER BY did":      {alice + " 2025-01-01 00:00:05", bob + " 2025-01-01 00:00:05"},
				"SELECT cursor || ' ' || last_event_time FROM firehose_cursor": {"6 2025-01-01 00:00:05"},
			},
		},
		{
			name: "a bad createdAt falls back to the event time",
			evs: []tEvent{
				commitEv(7, alice, tOp{action: "create", coll: nsFollow, rkey: "f1", subject: bob, created: "yesterday"}),
			},
			checks: map[string][]string{"SELECT created_at::text FROM follows": {"2025-01-01 00:00:07"}},
		},
		{
			name: "bad frames, info frames and other collections are counted, not written",
			evs: []tEvent{
				commitEv(1, alice, op("create", nsOther, "t1", "")),
				{seq: 2, bad: true},
				{seq: 3, kind: decode.KindInfo},
				commitEv(4, alice, postOp("create", "p1", "x")),
			},
			checks: map[string][]string{
				"SELECT text FROM posts":                      {"x"},
				"SELECT cursor FROM firehose_cursor":          {"4"},
				"SELECT skipped::text FROM backfill_segments": {`{"bad_frame": 1, "other_collection": 1}`},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := testDB(t)
			dir := t.TempDir()
			writeSpool(t, dir, tc.evs, tc.cuts...)
			cfg := Config{DatabaseURL: url, Workers: 2}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			load(t, cfg, dir)
			c := dbConn(t, url)
			for q, want := range tc.checks {
				got := query(t, c, q)
				if !slices.Equal(got, want) {
					t.Errorf("%s\n got %q\nwant %q", q, got, want)
				}
			}
			// The reference model must agree too.
			m := newModel()
			m.since, m.until = cfg.Since, cfg.Until
			if len(cfg.Collections) > 0 {
				m.selected = map[string]bool{}
				for _, col := range cfg.Collections {
					m.selected[nsOf(col)] = true
				}
			}
			m.applyAll(tc.evs)
			if d := diffDumps(dumpDB(t, c), m.dump()); d != "" {
				t.Errorf("database differs from the sequential model:\n%s", d)
			}
		})
	}
}

// badUpdates creates a post, a like, a follow and a profile, then updates each with a record
// of another type (bad_record), and creates a second post and a bad one.
func badUpdates() []tEvent {
	wrong := &bsky.FeedThreadgate{LexiconTypeID: nsOther, CreatedAt: testCreated, Post: post(alice, "p1")}
	bad := func(o tOp) tOp { o.action, o.rec, o.bad = "update", wrong, true; return o }
	return []tEvent{
		commitEv(1, alice, postOp("create", "p1", "one"), postOp("create", "p2", "two"), op("create", nsLike, "l1", post(bob, "p1")),
			op("create", nsFollow, "f1", carol), profileOp("create", "Alice")),
		commitEv(2, alice, bad(postOp("create", "p1", "")), bad(op("create", nsLike, "l1", post(bob, "p1"))),
			bad(op("create", nsFollow, "f1", carol)), bad(profileOp("create", "")),
			tOp{action: "create", coll: nsPost, rkey: "p3", rec: wrong, bad: true}),
	}
}

func nsOf(c decode.Collection) string {
	return [...]string{"", nsPost, nsLike, nsRepost, nsFollow, nsBlock, nsProfile}[c]
}
