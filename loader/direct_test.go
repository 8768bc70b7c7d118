package loader

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/backfill/backfill/decode"
	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/api/bsky"
	lexutil "github.com/bluesky-social/indigo/lex/util"
	"github.com/jackc/pgx/v5"
)

// liveApp writes rows as the AppView's own consumer would, before or between loads: into the
// database and into the sequential model, which then applies the loaded events on top.
type liveApp struct {
	tb testing.TB
	c  *pgx.Conn
	m  *model
}

var pairTableOf = map[string]string{nsLike: "likes", nsRepost: "reposts", nsFollow: "follows", nsBlock: "blocks"}

func pairColsOf(ns string) [2]string {
	switch ns {
	case nsLike, nsRepost:
		return [2]string{"user_did", "post_uri"}
	case nsFollow:
		return [2]string{"follower_did", "following_did"}
	}
	return [2]string{"blocker_did", "blocked_did"}
}

func (a liveApp) user(did, handle string, t time.Time) {
	exec(a.tb, a.c, `INSERT INTO users (did, handle, created_at, indexed_at) VALUES ($1, $2, $3, $3)`, did, handle, t)
	a.m.users[did] = &mUser{handle: handle, created: t, indexed: t}
}

func (a liveApp) post(did, rkey, text string, t time.Time) {
	uri := post(did, rkey)
	exec(a.tb, a.c, `INSERT INTO posts (uri, cid, author_did, text, created_at, indexed_at) VALUES ($1, $2, $3, $4, $5, $5)`, uri, someCID, did, text, t)
	a.m.posts[uri] = mPost{author: did, text: text, created: t, indexed: t}
}

func (a liveApp) pair(ns, did, rkey, subject string, t time.Time) {
	uri := "at://" + did + "/" + ns + "/" + rkey
	cols := pairColsOf(ns)
	exec(a.tb, a.c, fmt.Sprintf(`INSERT INTO %s (uri, %s, %s, created_at, indexed_at) VALUES ($1, $2, $3, $4, $4)`, pairTableOf[ns], cols[0], cols[1]), uri, did, subject, t)
	a.m.pairs[ns][uri] = mPair{a: did, b: subject, created: t, indexed: t}
}

// subjectOf returns what a create of ns by did points at in these tests.
func subjectOf(ns, rkey string) string {
	if ns == nsLike || ns == nsRepost {
		return post(carol, "p"+rkey)
	}
	return carol
}

func TestDirectCopy(t *testing.T) {
	t.Parallel()
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	type tc struct {
		name  string
		seed  func(a liveApp)
		evs   []tEvent
		cuts  []int
		rows  map[Table]RowCount // Summary.Rows, whatever the path
		falls map[Table]int      // units that fell back when the direct COPY is always tried
	}
	var cases []tc
	for _, ns := range []string{nsLike, nsRepost, nsFollow, nsBlock} {
		tab := pairTable(map[string]decode.Collection{nsLike: decode.CollectionLike, nsRepost: decode.CollectionRepost, nsFollow: decode.CollectionFollow, nsBlock: decode.CollectionBlock}[ns])
		creates := commitEv(1, alice, op("create", ns, "1", subjectOf(ns, "1")), op("create", ns, "2", subjectOf(ns, "2")), op("create", ns, "3", subjectOf(ns, "3")))
		if ns == nsFollow || ns == nsBlock {
			// Distinct pairs: one subject each.
			creates = commitEv(1, alice, op("create", ns, "1", carol), op("create", ns, "2", bob), op("create", ns, "3", "did:plc:dave"))
		}
		users := int64(2) // alice and carol
		if ns == nsFollow || ns == nsBlock {
			users = 4 // alice, carol, bob, dave
		}
		cases = append(cases,
			tc{
				name:  pairTableOf[ns] + ": a create meets a row with its uri",
				seed:  func(a liveApp) { a.pair(ns, alice, "2", "did:plc:other", old) },
				evs:   []tEvent{creates},
				rows:  map[Table]RowCount{TableUsers: {Inserted: users}, tab: {Inserted: 2}},
				falls: map[Table]int{tab: 1},
			},
			tc{
				name: pairTableOf[ns] + ": a create meets a row with its pair",
				seed: func(a liveApp) {
					a.pair(ns, alice, "x", creates.ops[2].subject, old)
				},
				evs:   []tEvent{creates},
				rows:  map[Table]RowCount{TableUsers: {Inserted: users}, tab: {Inserted: 2}},
				falls: map[Table]int{tab: 1},
			},
			tc{
				name: pairTableOf[ns] + ": a delete earlier in the unit frees the pair",
				seed: func(a liveApp) { a.pair(ns, alice, "x", creates.ops[0].subject, old) },
				evs: []tEvent{
					commitEv(1, alice, op("delete", ns, "x", "")),
					{seq: creates.seq + 1, time: at(2), kind: decode.KindCommit, did: alice, ops: creates.ops},
				},
				rows: map[Table]RowCount{TableUsers: {Inserted: users}, tab: {Inserted: 3, Deleted: 1}},
			},
		)
	}
	cases = append(cases,
		tc{
			name:  "posts: a create meets a row with its uri",
			seed:  func(a liveApp) { a.post(alice, "p2", "the live app's", old) },
			evs:   []tEvent{commitEv(1, alice, postOp("create", "p1", "one"), postOp("create", "p2", "two"), postOp("create", "p3", "three"))},
			rows:  map[Table]RowCount{TableUsers: {Inserted: 1}, TablePosts: {Inserted: 2}},
			falls: map[Table]int{TablePosts: 1},
		},
		tc{
			name: "users: existing users are updated, new ones written whole",
			seed: func(a liveApp) { a.user(alice, "old.test", old); a.user(carol, "carol.test", old) },
			evs: []tEvent{
				{seq: 1, time: at(1), kind: decode.KindIdentity, did: alice, handle: sp("new.test")},
				commitEv(2, alice, profileOp("create", "Alice")),
				{seq: 3, time: at(3), kind: decode.KindIdentity, did: bob, handle: sp("bob.test")},
				commitEv(4, bob, profileOp("create", "Bob")),
				{seq: 5, time: at(5), kind: decode.KindIdentity, did: carol, handle: sp("carol.test")},
				{seq: 6, time: at(6), kind: decode.KindIdentity, did: "did:plc:dave"},
				{seq: 7, time: at(7), kind: decode.KindIdentity, did: "did:plc:erin", handle: sp("handle.invalid")},
			},
			// alice: handle and profile; bob: created, then handle and profile; carol: same
			// handle; dave and erin: created, nothing to change.
			rows:  map[Table]RowCount{TableUsers: {Inserted: 3, Updated: 4}},
			falls: map[Table]int{TableUsers: 1},
		},
		tc{
			// Creates of one phase that collide with each other go straight in too: the first
			// of each pair wins, as in sequential application.
			name: "pair tables: creates of one unit with the same pair",
			evs: []tEvent{commitEv(1, alice,
				op("create", nsLike, "l1", post(bob, "p1")), op("create", nsLike, "l2", post(bob, "p1")),
				op("create", nsLike, "l3", post(carol, "p2")),
				op("create", nsFollow, "f1", carol), op("create", nsFollow, "f2", carol), op("create", nsFollow, "f3", bob))},
			rows: map[Table]RowCount{TableUsers: {Inserted: 3}, TableLikes: {Inserted: 2}, TableFollows: {Inserted: 2}},
		},
		tc{
			// A pre-existing row holds the pair of two colliding creates: both are skipped,
			// and so is the second of another colliding two only when the first was written.
			name: "pair tables: colliding creates, one pair held by a pre-existing row",
			seed: func(a liveApp) { a.pair(nsLike, alice, "x", post(bob, "p1"), old) },
			evs: []tEvent{commitEv(1, alice,
				op("create", nsLike, "l1", post(bob, "p1")), op("create", nsLike, "l2", post(bob, "p1")),
				op("create", nsLike, "l3", post(carol, "p2")), op("create", nsLike, "l4", post(carol, "p2")))},
			rows:  map[Table]RowCount{TableUsers: {Inserted: 3}, TableLikes: {Inserted: 1}},
			falls: map[Table]int{TableLikes: 1},
		},
		tc{
			// A create cut into a later phase (the delete of l2 follows a create at l2 that
			// l4 kept from cancelling) meets the pair of a create of the first phase, which
			// nothing deleted: it is probed before the blind COPY, which never meets it.
			name: "pair tables: a create of a later phase meets a row of an earlier one",
			evs: []tEvent{commitEv(1, alice,
				op("create", nsLike, "l1", post(bob, "p1")), op("create", nsLike, "l2", post(carol, "p2")),
				op("create", nsLike, "l4", post(carol, "p2")), op("delete", nsLike, "l2", ""),
				op("create", nsLike, "l3", post(bob, "p1")))},
			rows: map[Table]RowCount{TableUsers: {Inserted: 3}, TableLikes: {Inserted: 2, Deleted: 1}},
		},
		tc{
			// Creates whose uri or pair an earlier unit of the run wrote are probed before the
			// blind COPY (seenKeys), which therefore never meets them.
			name: "pair tables and posts: creates meet rows of earlier units",
			evs: []tEvent{
				commitEv(1, alice, op("create", nsLike, "l1", post(bob, "p1")), postOp("create", "p1", "one")),
				commitEv(2, alice, op("create", nsLike, "l2", post(bob, "p1")), op("create", nsLike, "l5", post(carol, "p2")), postOp("create", "p1", "again")),
				commitEv(3, alice, op("delete", nsLike, "l1", ""), op("create", nsLike, "l6", post(bob, "p1")), op("create", nsLike, "l5", post(carol, "p9"))),
			},
			cuts: []int{0, 1},
			rows: map[Table]RowCount{TableUsers: {Inserted: 3}, TablePosts: {Inserted: 1}, TableLikes: {Inserted: 3, Deleted: 1}},
		},
		tc{
			name: "the live app wrote the whole range first",
			seed: func(a liveApp) {
				a.user(alice, "handle.invalid", at(1))
				a.user(bob, "handle.invalid", at(1))
				a.user(carol, "handle.invalid", at(1))
				a.post(alice, "p1", "hello", at(1))
				a.pair(nsLike, alice, "l1", post(bob, "p1"), at(1))
				a.pair(nsFollow, alice, "f1", carol, at(2))
				a.pair(nsLike, bob, "l2", post(alice, "p1"), at(3))
			},
			evs: []tEvent{
				commitEv(1, alice, postOp("create", "p1", "hello"), op("create", nsLike, "l1", post(bob, "p1"))),
				commitEv(2, alice, op("create", nsFollow, "f1", carol)),
				commitEv(3, bob, op("create", nsLike, "l2", post(alice, "p1"))),
				commitEv(4, bob, op("create", nsLike, "l3", post(carol, "p1"))),
			},
			cuts:  []int{0, 1, 2},
			rows:  map[Table]RowCount{TableLikes: {Inserted: 1}},
			falls: map[Table]int{TableUsers: 2, TablePosts: 1, TableLikes: 2, TableFollows: 1},
		},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var dumps []map[string][]string
			for _, pol := range []directPolicy{directNever, directAlways, directProbe, directAdaptive} {
				url := testDB(t)
				conn := dbConn(t, url)
				// The creates must meet the rows: none is left out for a later delete (hints.go).
				l := openLoader(t, Config{DatabaseURL: url, BatchSize: 1, NoDeleteHints: true})
				l.direct = pol
				m := newModel()
				if c.seed != nil {
					c.seed(liveApp{t, conn, m})
				}
				dir := t.TempDir()
				writeSpool(t, dir, c.evs, c.cuts...)
				sum, err := l.Run(context.Background(), dir, nil)
				if err != nil {
					t.Fatalf("policy %d: run: %v", pol, err)
				}
				m.applyAll(c.evs)
				got := dumpDB(t, conn)
				if d := diffDumps(got, m.dump()); d != "" {
					t.Errorf("policy %d: database differs from the sequential model:\n%s", pol, d)
				}
				dumps = append(dumps, got)
				for tab := Table(0); tab < NumTables; tab++ {
					if tab == TableAccounts {
						continue
					}
					if got, want := sum.Rows[tab], c.rows[tab]; got != want {
						t.Errorf("policy %d: %s counted %+v, want %+v", pol, tab, got, want)
					}
					dc := l.directCounts[tab]
					if pol == directAlways {
						if got, want := dc.fallbacks, c.falls[tab]; got != want {
							t.Errorf("policy %d: %s fell back in %d units, want %d", pol, tab, got, want)
						}
					}
					if pol == directProbe && (dc.fallbacks != 0 || dc.blind != 0) {
						t.Errorf("policy %d: %s was COPYed blind: %+v", pol, tab, dc)
					}
					if dc.staged != 0 {
						t.Errorf("policy %d: %s went through staging after a direct attempt: %+v", pol, tab, dc)
					}
					if pol == directNever && l.directCounts[tab] != (directCounts{}) {
						t.Errorf("policy %d: %s tried the direct COPY: %+v", pol, tab, l.directCounts[tab])
					}
				}
				if pol == directAlways && c.falls == nil {
					var blind int
					for _, dc := range l.directCounts {
						blind += dc.blind
					}
					if blind == 0 {
						t.Errorf("no blind COPY succeeded")
					}
				}
			}
			for i := 1; i < len(dumps); i++ {
				if d := diffDumps(dumps[i], dumps[0]); d != "" {
					t.Errorf("policies disagree:\n%s", d)
				}
			}
		})
	}
}

// TestDirectBackoff checks that a table whose blind COPY keeps failing is probed first in more
// and more units, and COPYed blind in every unit again after a success.
func TestDirectBackoff(t *testing.T) {
	t.Parallel()
	url := testDB(t)
	conn := dbConn(t, url)
	l := openLoader(t, Config{DatabaseURL: url, BatchSize: 1})
	m := newModel()
	a := liveApp{t, conn, m}
	// Units 1-8 each create a like whose uri the live app holds; units 9-14 create new ones.
	var evs []tEvent
	var cuts []int
	for i := range 14 {
		seq := int64(i + 1)
		if i < 8 {
			a.pair(nsLike, alice, fmt.Sprintf("held%d", i), post(bob, fmt.Sprintf("q%d", i)), at(0))
			evs = append(evs, commitEv(seq, alice, op("create", nsLike, fmt.Sprintf("held%d", i), post(bob, fmt.Sprintf("p%d", i))), op("create", nsLike, fmt.Sprintf("new%d", i), post(carol, fmt.Sprintf("p%d", i)))))
		} else {
			evs = append(evs, commitEv(seq, alice, op("create", nsLike, fmt.Sprintf("new%d", i), post(carol, fmt.Sprintf("p%d", i)))))
		}
		cuts = append(cuts, i)
	}
	dir := t.TempDir()
	writeSpool(t, dir, evs, cuts...)
	sum, err := l.Run(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Unit 1 fails (then probes; skip 1), 2 probes, 3 fails (skip 2), 4-5 probe, 6 fails (skip
	// 4), 7-10 probe, 11-14 succeed blind.
	want := directCounts{blind: 4, fallbacks: 3, probed: 7}
	if got := l.directCounts[TableLikes]; got != want {
		t.Errorf("likes: %+v, want %+v", got, want)
	}
	if got, want := sum.Rows[TableLikes], (RowCount{Inserted: 14}); got != want {
		t.Errorf("likes counted %+v, want %+v", got, want)
	}
	m.applyAll(evs)
	if d := diffDumps(dumpDB(t, conn), m.dump()); d != "" {
		t.Errorf("database differs from the sequential model:\n%s", d)
	}
	if !slices.Contains(query(t, conn, `SELECT post_uri FROM likes`), post(bob, "q0")) {
		t.Errorf("the live app's like was replaced")
	}
}

// TestCopyEncoding checks every column the loader COPYs in binary against the decoded rows it
// came from, on both paths: straight into the tables, and through staging.
func TestCopyEncoding(t *testing.T) {
	t.Parallel()
	c := cidOf(t, []byte("blob"))
	blob := func() *lexutil.LexBlob {
		return &lexutil.LexBlob{Ref: lexutil.LexLink(c), MimeType: "image/jpeg", Size: 1234}
	}
	full := &bsky.FeedPost{
		LexiconTypeID: nsPost,
		CreatedAt:     "1999-12-31T23:59:59.123456789Z",
		Text:          "héllo 🌍 世界 #go \\ \"quoted\"",
		Reply: &bsky.FeedPost_ReplyRef{
			Parent: &comatproto.RepoStrongRef{Uri: post(bob, "p0"), Cid: someCID},
			Root:   &comatproto.RepoStrongRef{Uri: post(carol, "r0"), Cid: someCID},
		},
		Embed: &bsky.FeedPost_Embed{EmbedExternal: &bsky.EmbedExternal{LexiconTypeID: "app.bsky.embed.external", External: &bsky.EmbedExternal_External{
			Uri: "https://example.com/ü", Title: "A title", Description: "Ein Text", Thumb: blob(),
		}}},
		Facets: []*bsky.RichtextFacet{{
			Index:    &bsky.RichtextFacet_ByteSlice{ByteStart: 20, ByteEnd: 23},
			Features: []*bsky.RichtextFacet_Features_Elem{{RichtextFacet_Tag: &bsky.RichtextFacet_Tag{LexiconTypeID: "app.bsky.richtext.facet#tag", Tag: "go"}}},
		}},
		Tags: []string{"golang", "ünïcode"},
	}
	bare := &bsky.FeedPost{LexiconTypeID: nsPost, CreatedAt: "2031-02-03T04:05:06Z", Text: ""}
	name, desc := "Ålice 🐇", "line one\nline two"
	profile := &bsky.ActorProfile{
		LexiconTypeID: nsProfile, DisplayName: &name, Description: &desc, Avatar: blob(), Banner: blob(),
		PinnedPost: &comatproto.RepoStrongRef{Uri: post(alice, "p1"), Cid: someCID},
	}
	evs := []tEvent{
		commitEv(1, alice, tOp{action: "create", coll: nsPost, rkey: "p1", rec: full}, tOp{action: "create", coll: nsPost, rkey: "p2", rec: bare}),
		commitEv(2, alice, tOp{action: "create", coll: nsProfile, rkey: "self", rec: profile}),
		commitEv(3, bob, tOp{action: "create", coll: nsProfile, rkey: "self", rec: &bsky.ActorProfile{LexiconTypeID: nsProfile}}),
	}
	// What the rows must hold: the decoder's rows.
	dec := decode.NewDecoder(decode.Options{})
	var posts []*decode.PostRow
	profiles := map[string]*decode.ProfileRow{}
	for _, e := range evs {
		ev, err := dec.Decode(e.frame(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range ev.Ops {
			if o.Post != nil {
				posts = append(posts, o.Post)
			}
			if o.Profile != nil {
				profiles[ev.DID] = o.Profile
			}
		}
	}
	if len(posts) != 2 || len(profiles) != 2 || posts[0].Embed == nil || posts[0].Facets == nil || profiles[alice].PinnedPost == nil {
		t.Fatalf("decoded %d posts, %d profiles: the records lack fields this test is about", len(posts), len(profiles))
	}
	jsonEq := func(got *string, want []byte) bool {
		if got == nil || want == nil {
			return got == nil && want == nil
		}
		var g, w any
		return json.Unmarshal([]byte(*got), &g) == nil && json.Unmarshal(want, &w) == nil && reflect.DeepEqual(g, w)
	}
	strEq := func(got *string, want string) bool { return (got == nil && want == "") || (got != nil && *got == want) }
	ptrEq := func(got, want *string) bool { return (got == nil) == (want == nil) && (got == nil || *got == *want) }
	for _, pol := range []directPolicy{directAlways, directNever} {
		url := testDB(t)
		dir := t.TempDir()
		writeSpool(t, dir, evs)
		load(t, Config{DatabaseURL: url}, dir, func(l *Loader) { l.direct = pol })
		conn := dbConn(t, url)
		for _, want := range posts {
			var cid, author, text string
			var parent, root, embed, facets, tags *string
			var created time.Time
			err := conn.QueryRow(context.Background(), `SELECT cid, author_did, text, parent_uri, root_uri, embed::text, facets::text, tags::text, created_at FROM posts WHERE uri = $1`, want.URI).
				Scan(&cid, &author, &text, &parent, &root, &embed, &facets, &tags, &created)
			if err != nil {
				t.Fatalf("policy %d: post %s: %v", pol, want.URI, err)
			}
			if cid != want.CID || author != want.AuthorDID || text != want.Text || !strEq(parent, want.ParentURI) || !strEq(root, want.RootURI) ||
				!jsonEq(embed, want.Embed) || !jsonEq(facets, want.Facets) || !jsonEq(tags, want.Tags) || !created.Equal(want.CreatedAt.Truncate(time.Microsecond)) {
				t.Errorf("policy %d: post %s:\n got %q %q %q %v %v %v %v %v %v\nwant %+v", pol, want.URI, cid, author, text, parent, root, embed, facets, tags, created, want)
			}
		}
		for did, want := range profiles {
			var dn, desc, avatar, banner, pinned, record *string
			err := conn.QueryRow(context.Background(), `SELECT display_name, description, avatar_url, banner_url, pinned_post::text, profile_record::text FROM users WHERE did = $1`, did).
				Scan(&dn, &desc, &avatar, &banner, &pinned, &record)
			if err != nil {
				t.Fatalf("policy %d: user %s: %v", pol, did, err)
			}
			if !ptrEq(dn, want.DisplayName) || !ptrEq(desc, want.Description) || !ptrEq(avatar, want.AvatarCID) || !ptrEq(banner, want.BannerCID) ||
				!jsonEq(pinned, want.PinnedPost) || !jsonEq(record, want.Record) {
				t.Errorf("policy %d: user %s:\n got %v %v %v %v %v %v\nwant %+v", pol, did, dn, desc, avatar, banner, pinned, record, want)
			}
		}
	}
}

// TestConcurrentUser: a users row that another session commits while the loader's COPY of new
// users waits on it sends the unit's users through staging, and what the unit sets on them
// still lands, counted once.
func TestConcurrentUser(t *testing.T) {
	t.Parallel()
	url := testDB(t)
	l := openLoader(t, Config{DatabaseURL: url})
	l.direct = directProbe // the probe cannot see the other session's row: the COPY meets it
	dir := t.TempDir()
	evs := []tEvent{
		{seq: 1, time: at(1), kind: decode.KindIdentity, did: bob, handle: sp("bob.test")},
		commitEv(2, bob, profileOp("create", "Bob")),
		commitEv(3, alice, op("create", nsFollow, "f1", bob)),
	}
	writeSpool(t, dir, evs)
	sum := raceRun(t, l, url, dir, `INSERT INTO users (did, handle, created_at, indexed_at) VALUES ($1, 'other.test', '2020-01-01', '2020-01-01')`, bob)
	if got, want := l.directCounts[TableUsers], (directCounts{probed: 1, staged: 1}); got != want {
		t.Errorf("direct COPY into users: %+v, want %+v", got, want)
	}
	// alice is inserted; bob gets the unit's handle and profile.
	if got, want := sum.Rows[TableUsers], (RowCount{Inserted: 1, Updated: 2}); got != want {
		t.Errorf("users counted %+v, want %+v", got, want)
	}
	m := newModel()
	m.users[bob] = &mUser{handle: "other.test", created: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), indexed: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
	m.applyAll(evs)
	if d := diffDumps(dumpDB(t, dbConn(t, url)), m.dump()); d != "" {
		t.Errorf("database differs from the sequential model:\n%s", d)
	}
}

// TestDirectCopyError: an error of a direct COPY other than a key that exists (here a check
// constraint the AppView added) fails the unit as the INSERT would have, without retries or
// fallbacks, and leaves nothing half written.
func TestDirectCopyError(t *testing.T) {
	t.Parallel()
	url := testDB(t)
	l := openLoader(t, Config{DatabaseURL: url})
	l.direct = directAlways
	c := dbConn(t, url)
	exec(t, c, `ALTER TABLE follows ADD CONSTRAINT no_self_follow CHECK (follower_did <> following_did)`)
	dir := t.TempDir()
	writeSpool(t, dir, []tEvent{
		commitEv(1, alice, postOp("create", "p1", "hi"), op("create", nsFollow, "f1", bob), op("create", nsFollow, "f2", alice)),
	})
	sum, err := l.Run(context.Background(), dir, nil)
	if err == nil || !strings.Contains(err.Error(), "no_self_follow") || !strings.Contains(err.Error(), "copy into follows") {
		t.Fatalf("run error = %v, want the check constraint's, from the COPY into follows", err)
	}
	if sum.Retries != 0 {
		t.Errorf("retries = %d, want 0", sum.Retries)
	}
	if got := l.directCounts[TableFollows]; got != (directCounts{}) {
		t.Errorf("direct COPY into follows: %+v, want no outcome recorded", got)
	}
	for _, table := range []string{"users", "posts", "follows"} {
		if got := query(t, c, `SELECT count(*)::text FROM `+table); !slices.Equal(got, []string{"0"}) {
			t.Errorf("%s has %v rows after the failed unit, want 0", table, got)
		}
	}
}

// TestKept checks that the creates a pair target keeps are the same whether kept compares keys
// or their hashes, including when different keys share a hash.
func TestKept(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	for round := range 300 {
		n := 1 + rng.IntN(40)
		ops := make([]pairOp, n)
		for i := range ops {
			ops[i].uri = fmt.Sprintf("at://did:plc:a/app.bsky.feed.like/%d", rng.IntN(n))
			ops[i].key = pairKey{fmt.Sprintf("did:plc:%d", rng.IntN(3)), fmt.Sprintf("at://p/%d", rng.IntN(4))}
			ops[i].uh, ops[i].ph = uriHash(TableLikes, ops[i].uri), pairHash(TableLikes, ops[i].key)
		}
		found := map[int]exist{}
		for range rng.IntN(4) {
			found[rng.IntN(n)] = exist(1 + rng.IntN(3))
		}
		tgt := func(hashes func(i int) (keyHash, keyHash)) *target {
			return &target{n: n, pairs: true, found: found, hashes: hashes,
				key: func(i int) (string, pairKey) { return ops[i].uri, ops[i].key }}
		}
		want := tgt(nil).kept()
		byHash := tgt(func(i int) (keyHash, keyHash) { return ops[i].uh, ops[i].ph }).kept()
		// Few hashes for many keys: every lookup that meets another key's hash must notice.
		clash := tgt(func(i int) (keyHash, keyHash) { return ops[i].uh % 2, ops[i].ph % 2 }).kept()
		if !slices.Equal(byHash, want) || !slices.Equal(clash, want) {
			t.Fatalf("round %d: kept by key %v, by hash %v, by clashing hashes %v", round, want, byHash, clash)
		}
	}
}

// TestCopyOrder checks the order of a target's COPY: the creates kept (not found by a probe,
// not left out as doomed), in ascending key order, or descending when desc, however the target
// knows its order (creates already sorted, a byKey list, or neither).
func TestCopyOrder(t *testing.T) {
	keys := []string{"at://did:plc:c/x/1", "at://did:plc:a/x/1", "at://did:plc:d/x/1", "at://did:plc:b/x/1", "at://did:plc:e/x/1"}
	sorted := slices.Sorted(slices.Values(keys))
	for _, how := range []string{"keySorted", "byKey", "unsorted"} {
		for _, desc := range []bool{false, true} {
			ks := keys
			tgt := &target{n: len(ks), desc: desc}
			switch how {
			case "keySorted":
				ks, tgt.keySorted = sorted, true
			case "byKey":
				for _, k := range sorted {
					tgt.byKey = append(tgt.byKey, int32(slices.Index(ks, k)))
				}
			}
			var wrote []string
			tgt.key = func(i int) (string, pairKey) { return ks[i], pairKey{} }
			tgt.row = func(i int, _ *copyRow) { wrote = append(wrote, ks[i]) }
			// "at://did:plc:b/x/1" exists (a probe found it); "at://did:plc:d/x/1" is doomed.
			tgt.found = map[int]exist{slices.Index(ks, "at://did:plc:b/x/1"): existKey}
			tgt.doomed = func(i int) bool { return ks[i] == "at://did:plc:d/x/1" }
			c := tgt.copy()
			for i := range c.n {
				c.row(i, &copyRow{})
			}
			want := []string{"at://did:plc:a/x/1", "at://did:plc:c/x/1", "at://did:plc:e/x/1"}
			if desc {
				slices.Reverse(want)
			}
			if !slices.Equal(wrote, want) {
				t.Errorf("%s, desc %v: COPY wrote %v, want %v", how, desc, wrote, want)
			}
			if len(tgt.left) != 1 || ks[tgt.left[0]] != "at://did:plc:d/x/1" {
				t.Errorf("%s, desc %v: left out %v, want the doomed create", how, desc, tgt.left)
			}
		}
	}
}

// TestProbeOrder checks a probe of a pair table's creates: the keys go to the server in key
// order (byKey), whatever the order of the creates probed, and what the probe finds lands on
// the right creates.
func TestProbeOrder(t *testing.T) {
	url := testDB(t)
	c := dbConn(t, url)
	if _, err := ensureSchema(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 7))
	const n = 60
	uris, as, bs := make([]string, n), make([]string, n), make([]string, n)
	for i := range n {
		did := fmt.Sprintf("did:plc:u%02d", rng.IntN(30))
		uris[i] = fmt.Sprintf("at://%s/app.bsky.feed.like/%03d", did, i)
		as[i], bs[i] = did, fmt.Sprintf("at://did:plc:p/app.bsky.feed.post/%03d", i)
	}
	// Existing rows: the uri of create 3, the pair of create 7 (under another uri), both of 11.
	exec(t, c, `INSERT INTO likes (uri, user_did, post_uri, created_at, indexed_at) VALUES ($1, 'did:plc:x', 'at://x', now(), now()), ($2, $3, $4, now(), now()), ($5, $6, $7, now(), now())`,
		uris[3], "at://did:plc:other/app.bsky.feed.like/1", as[7], bs[7], uris[11], as[11], bs[11])
	byKey := make([]int32, n)
	for i := range byKey {
		byKey[i] = int32(i)
	}
	slices.SortFunc(byKey, func(x, y int32) int { return strings.Compare(uris[x], uris[y]) })
	var sent []string
	tgt := &target{n: n, pairs: true, byKey: byKey, table: "likes", probe: probePairs("likes", pairColumns[0]),
		args: func(idx []int) []any {
			u, a, b := make([]string, len(idx)), make([]string, len(idx)), make([]string, len(idx))
			for j, i := range idx {
				u[j], a[j], b[j] = uris[i], as[i], bs[i]
			}
			sent = u
			return []any{u, a, b}
		}}
	idx := rng.Perm(n)[:40]
	idx = append(idx, 3, 7, 11)
	tp := newTxPipe(c)
	tgt.queueProbe(tp, idx)
	if err := tp.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(sent, strings.Compare) || len(sent) != len(slices.Compact(slices.Sorted(slices.Values(idx)))) {
		t.Errorf("probe sent %d uris, sorted %v; want the %d creates in key order", len(sent), slices.IsSortedFunc(sent, strings.Compare), len(idx))
	}
	want := map[int]exist{3: existKey, 7: existPair, 11: existKey | existPair}
	if !reflect.DeepEqual(tgt.found, want) {
		t.Errorf("probe found %v, want %v", tgt.found, want)
	}
	tp.rollback(context.Background())

	// A byKey that misses a create leaves the probe's order alone rather than the create out.
	part := &target{n: 4, byKey: []int32{2, 0, 1}}
	if got := part.inKeyOrder([]int{3, 1, 2}); !slices.Equal(got, []int{3, 1, 2}) {
		t.Errorf("inKeyOrder with a partial byKey gave %v, want [3 1 2]", got)
	}
	if got := part.inKeyOrder([]int{1, 2, 0}); !slices.Equal(got, []int{2, 0, 1}) {
		t.Errorf("inKeyOrder gave %v, want [2 0 1]", got)
	}
}
