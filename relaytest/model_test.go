package relaytest

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/backfill/backfill/decode"
	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/api/bsky"
	lexutil "github.com/bluesky-social/indigo/lex/util"
	"github.com/ipfs/go-cid"
	cbg "github.com/whyrusleeping/cbor-gen"
)

// scenario is a relay with an empty log, for hand-built event sequences.
type scenario struct {
	t *testing.T
	r *Relay
}

func newScenario(t *testing.T) *scenario {
	return &scenario{t: t, r: newRelay(t, Config{Seed: 1, Users: 3})}
}

// commit appends a commit by user 0 (or the given user) and returns its seq.
func (s *scenario) commit(user int, ops ...Op) int64 {
	s.t.Helper()
	seq, err := s.r.AppendCommit(user, ops...)
	if err != nil {
		s.t.Fatalf("AppendCommit: %v", err)
	}
	return seq
}

// time returns the time of the event with seq.
func (s *scenario) time(seq int64) time.Time {
	s.t.Helper()
	for _, f := range s.r.Log() {
		if f.Seq == seq {
			return f.Time
		}
	}
	s.t.Fatalf("no event %d", seq)
	return time.Time{}
}

func (s *scenario) all() *Model { return s.r.Model(0, s.r.Head()) }

const (
	extDID  = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	extDID2 = "did:web:friend.example.com"
	postP   = "at://" + extDID + "/app.bsky.feed.post/3jui7kd54zh2y"
	postQ   = "at://" + extDID2 + "/app.bsky.feed.post/3jui7kd54zh2z"
	created = "2024-11-05T10:20:30.123Z"
)

var createdTime = time.Date(2024, 11, 5, 10, 20, 30, 123_000_000, time.UTC)

func ref(uri string) *comatproto.RepoStrongRef {
	return &comatproto.RepoStrongRef{Uri: uri, Cid: "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"}
}

func like(subject string) *bsky.FeedLike {
	return &bsky.FeedLike{LexiconTypeID: collLike, CreatedAt: created, Subject: ref(subject)}
}

func repost(subject string) *bsky.FeedRepost {
	return &bsky.FeedRepost{LexiconTypeID: collRepost, CreatedAt: created, Subject: ref(subject)}
}

func follow(did string) *bsky.GraphFollow {
	return &bsky.GraphFollow{LexiconTypeID: collFollow, CreatedAt: created, Subject: did}
}

func blockOf(did string) *bsky.GraphBlock {
	return &bsky.GraphBlock{LexiconTypeID: collBlock, CreatedAt: created, Subject: did}
}

func post(text string) *bsky.FeedPost {
	return &bsky.FeedPost{LexiconTypeID: collPost, CreatedAt: created, Text: text}
}

func create(path string, rec cbg.CBORMarshaler) Op {
	return Op{Action: "create", Path: path, Record: rec}
}

func update(path string, rec cbg.CBORMarshaler) Op {
	return Op{Action: "update", Path: path, Record: rec}
}

func del(path string) Op { return Op{Action: "delete", Path: path} }

// jsonEqual reports whether two JSON texts hold the same value.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("JSON %q: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("JSON %q: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func TestModelCreateDeleteRecreate(t *testing.T) {
	s := newScenario(t)
	uri := "at://" + s.r.DID(0) + "/" + collLike + "/3kabcdefghij2"
	s1 := s.commit(0, create(collLike+"/3kabcdefghij2", like(postP)))
	s2 := s.commit(0, del(collLike+"/3kabcdefghij2"))
	s3 := s.commit(0, create(collLike+"/3kabcdefghij2", like(postQ)))

	if got := s.r.Model(s1, s1).Likes[uri]; got.PostURI != postP || !got.IndexedAt.Equal(s.time(s1)) || !got.CreatedAt.Equal(createdTime) {
		t.Errorf("after create: got %+v, want post %s indexed at %v created at %v", got, postP, s.time(s1), createdTime)
	}
	if _, ok := s.r.Model(s1, s2).Likes[uri]; ok {
		t.Errorf("after delete: like still there")
	}
	got, ok := s.r.Model(s1, s3).Likes[uri]
	if !ok || got.PostURI != postQ || !got.IndexedAt.Equal(s.time(s3)) {
		t.Errorf("after re-create: got %+v (present %v), want post %s indexed at %v", got, ok, postQ, s.time(s3))
	}
	// A delete of a row the window never saw does nothing.
	if m := s.r.Model(s2, s2); len(m.Likes) != 0 {
		t.Errorf("delete alone: got %d likes", len(m.Likes))
	}
}

func TestModelDuplicateURI(t *testing.T) {
	s := newScenario(t)
	path := collPost + "/3kabcdefghij2"
	s.commit(0, create(path, post("first")))
	s.commit(0, create(path, post("second"))) // a create of an existing uri leaves the row as is
	if got := s.all().Posts["at://"+s.r.DID(0)+"/"+path].Text; got != "first" {
		t.Errorf("text: got %q, want %q", got, "first")
	}
}

func TestModelDuplicatePairs(t *testing.T) {
	for _, tc := range []struct {
		coll string
		rec  func(subject string) cbg.CBORMarshaler
		a, b string // two subjects
		rows func(m *Model) map[string]bool
	}{
		{collLike, func(s string) cbg.CBORMarshaler { return like(s) }, postP, postQ, func(m *Model) map[string]bool { return keys(m.Likes) }},
		{collRepost, func(s string) cbg.CBORMarshaler { return repost(s) }, postP, postQ, func(m *Model) map[string]bool { return keys(m.Reposts) }},
		{collFollow, func(s string) cbg.CBORMarshaler { return follow(s) }, extDID, extDID2, func(m *Model) map[string]bool { return keys(m.Follows) }},
		{collBlock, func(s string) cbg.CBORMarshaler { return blockOf(s) }, extDID, extDID2, func(m *Model) map[string]bool { return keys(m.Blocks) }},
	} {
		t.Run(tc.coll, func(t *testing.T) {
			s := newScenario(t)
			p1, p2, p3 := tc.coll+"/3kaaaaaaaaaa2", tc.coll+"/3kbbbbbbbbbb2", tc.coll+"/3kcccccccccc2"
			u1, u2, u3 := "at://"+s.r.DID(0)+"/"+p1, "at://"+s.r.DID(0)+"/"+p2, "at://"+s.r.DID(0)+"/"+p3
			s1 := s.commit(0, create(p1, tc.rec(tc.a)))
			s2 := s.commit(0, create(p2, tc.rec(tc.a))) // same pair, other uri: ignored
			if got := tc.rows(s.r.Model(s1, s2)); !reflect.DeepEqual(got, map[string]bool{u1: true}) {
				t.Errorf("duplicate pair: got %v, want only %s", got, u1)
			}
			if got := tc.rows(s.r.Model(s2, s2)); !reflect.DeepEqual(got, map[string]bool{u2: true}) {
				t.Errorf("second create alone: got %v, want %s", got, u2)
			}
			s3 := s.commit(0, del(p1))
			if got := tc.rows(s.r.Model(s1, s3)); len(got) != 0 {
				t.Errorf("after deleting the first: got %v, want none (the second was never inserted)", got)
			}
			// Delete then create of the pair (new uri): the new row goes in.
			s4 := s.commit(0, create(p3, tc.rec(tc.a)))
			if got := tc.rows(s.r.Model(s1, s4)); !reflect.DeepEqual(got, map[string]bool{u3: true}) {
				t.Errorf("delete then create of the pair: got %v, want %s", got, u3)
			}
			// An update moving p3 onto a pair another row holds removes it and inserts nothing.
			s5 := s.commit(0, create(p1, tc.rec(tc.b)))
			s6 := s.commit(0, update(p3, tc.rec(tc.b)))
			if got := tc.rows(s.r.Model(s1, s6)); !reflect.DeepEqual(got, map[string]bool{u1: true}) {
				t.Errorf("update onto a held pair: got %v, want only %s", got, u1)
			}
			// Two rows of the same pair in one commit: the first op wins.
			s7 := s.commit(1, create(p1, tc.rec(tc.a)), create(p2, tc.rec(tc.a)))
			m := s.r.Model(s7, s7)
			if got := tc.rows(m); !reflect.DeepEqual(got, map[string]bool{"at://" + s.r.DID(1) + "/" + p1: true}) {
				t.Errorf("same pair twice in one commit: got %v", got)
			}
			_ = s5
		})
	}
}

func keys[V any](m map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

func TestModelUpdateCreates(t *testing.T) {
	s := newScenario(t)
	path := collPost + "/3kabcdefghij2"
	uri := "at://" + s.r.DID(0) + "/" + path
	s1 := s.commit(0, create(path, post("v1")))
	s2 := s.commit(0, update(path, post("v2")))
	for _, m := range []*Model{s.r.Model(s2, s2), s.r.Model(s1, s2)} {
		got, ok := m.Posts[uri]
		if !ok || got.Text != "v2" || !got.IndexedAt.Equal(s.time(s2)) {
			t.Errorf("got %+v (present %v), want text v2 indexed at the update", got, ok)
		}
	}
}

func TestModelProfile(t *testing.T) {
	s := newScenario(t)
	did := s.r.DID(0)
	name, desc := "Alice ✨", "hello\nworld"
	avatar := lexutil.LexBlob{Ref: lexutil.LexLink(cidOf(cid.Raw, []byte("avatar"))), MimeType: "image/jpeg", Size: 1234}
	banner := lexutil.LexBlob{Ref: lexutil.LexLink(cidOf(cid.Raw, []byte("banner"))), MimeType: "image/png", Size: 99}
	full := &bsky.ActorProfile{LexiconTypeID: collProfile, DisplayName: &name, Description: &desc, Avatar: &avatar, Banner: &banner, PinnedPost: ref(postP)}
	handle := "Alice.Example.COM"
	s.r.AppendIdentity(0, &handle)
	s1 := s.commit(0, create(collProfile+"/self", full))

	u := s.all().Users[did]
	if u.DisplayName == nil || *u.DisplayName != name || u.Description == nil || *u.Description != desc {
		t.Errorf("name/description: got %v %v", u.DisplayName, u.Description)
	}
	if u.AvatarURL == nil || *u.AvatarURL != avatar.Ref.String() || u.BannerURL == nil || *u.BannerURL != banner.Ref.String() {
		t.Errorf("avatar/banner: got %v %v, want the blob CIDs", u.AvatarURL, u.BannerURL)
	}
	if want := `{"uri":"` + postP + `","cid":"` + ref(postP).Cid + `"}`; !jsonEqual(t, u.PinnedPost, []byte(want)) {
		t.Errorf("pinned_post: got %s, want %s", u.PinnedPost, want)
	}
	wantRecord := `{"$type":"app.bsky.actor.profile","displayName":"Alice ✨","description":"hello\nworld",
		"avatar":{"$type":"blob","ref":{"$link":"` + avatar.Ref.String() + `"},"mimeType":"image/jpeg","size":1234},
		"banner":{"$type":"blob","ref":{"$link":"` + banner.Ref.String() + `"},"mimeType":"image/png","size":99},
		"pinnedPost":{"uri":"` + postP + `","cid":"` + ref(postP).Cid + `"}}`
	if !jsonEqual(t, u.ProfileRecord, []byte(wantRecord)) {
		t.Errorf("profile_record: got %s", u.ProfileRecord)
	}
	if u.Handle != "alice.example.com" {
		t.Errorf("handle: got %q", u.Handle)
	}

	// An update sets every column to the new record's values, NULL where absent.
	s.commit(0, update(collProfile+"/self", &bsky.ActorProfile{LexiconTypeID: collProfile, DisplayName: &name}))
	u = s.all().Users[did]
	if u.DisplayName == nil || u.Description != nil || u.AvatarURL != nil || u.BannerURL != nil || u.PinnedPost != nil {
		t.Errorf("after update: got %+v, want only display_name", u)
	}

	// A delete clears the six columns and keeps the row.
	s.commit(0, del(collProfile+"/self"))
	u, ok := s.all().Users[did]
	if !ok || u.DisplayName != nil || u.Description != nil || u.AvatarURL != nil || u.BannerURL != nil || u.PinnedPost != nil || u.ProfileRecord != nil {
		t.Errorf("after delete: got %+v (present %v), want the row with the profile columns NULL", u, ok)
	}
	if u.Handle != "alice.example.com" {
		t.Errorf("after delete: handle %q", u.Handle)
	}
	// A window that starts at the create has no identity event: the handle is the default.
	if got := s.r.Model(s1, s.r.Head()).Users[did].Handle; got != "handle.invalid" {
		t.Errorf("handle without an #identity in range: got %q", got)
	}
	// A profile at another rkey is another collection.
	s.commit(0, create(collProfile+"/other", full))
	if u := s.all().Users[did]; u.DisplayName != nil {
		t.Errorf("profile at rkey other: display name %q set", *u.DisplayName)
	}
}

func TestModelIdentity(t *testing.T) {
	s := newScenario(t)
	did := s.r.DID(1)
	h := "Bob.Example.ORG"
	s1 := s.r.AppendIdentity(1, &h)
	s.r.AppendIdentity(1, nil)
	m := s.all()
	u := m.Users[did]
	if u.Handle != "bob.example.org" {
		t.Errorf("identity without a handle: handle %q, want the earlier bob.example.org", u.Handle)
	}
	if !u.CreatedAt.Equal(s.time(s1)) || !u.IndexedAt.Equal(s.time(s1)) {
		t.Errorf("created_at/indexed_at: got %v/%v, want the first event %v", u.CreatedAt, u.IndexedAt, s.time(s1))
	}
	s2 := s.r.AppendIdentity(2, nil)
	if u := s.all().Users[s.r.DID(2)]; u.Handle != "handle.invalid" || !u.CreatedAt.Equal(s.time(s2)) {
		t.Errorf("identity without handle for a new DID: got %+v", u)
	}
}

func TestModelAccounts(t *testing.T) {
	s := newScenario(t)
	str := func(v string) *string { return &v }
	s.r.AppendAccount(0, true, nil)
	s.r.AppendAccount(1, false, str("takendown"))
	s.r.AppendAccount(2, false, str("deactivated"))
	last := s.r.AppendAccount(2, false, str("some-future-status"))
	m := s.all()
	for i, want := range []AccountRow{
		{DID: s.r.DID(0), Active: true, Status: "active"},
		{DID: s.r.DID(1), Active: false, Status: "takendown"},
		{DID: s.r.DID(2), Active: false, Status: "some-future-status", Seq: last, Time: s.time(last)},
	} {
		got := m.Accounts[want.DID]
		if got.Active != want.Active || got.Status != want.Status || (want.Seq != 0 && (got.Seq != want.Seq || !got.Time.Equal(want.Time))) {
			t.Errorf("account %d: got %+v, want %+v", i, got, want)
		}
		if _, ok := m.Users[want.DID]; !ok {
			t.Errorf("account %d: no users row", i)
		}
	}
}

func TestModelUsersEnsured(t *testing.T) {
	s := newScenario(t)
	s1 := s.commit(0, create(collFollow+"/3kaaaaaaaaaa2", follow(extDID)))
	s2 := s.commit(0, create(collLike+"/3kaaaaaaaaaa2", like(postQ)), create(collBlock+"/3kaaaaaaaaaa2", blockOf(extDID)))
	s3 := s.commit(1, del(collPost+"/3kzzzzzzzzzz2")) // a commit with nothing to delete still names its repo

	m := s.all()
	for did, seq := range map[string]int64{s.r.DID(0): s1, extDID: s1, extDID2: s2, s.r.DID(1): s3} {
		u, ok := m.Users[did]
		if !ok || u.Handle != "handle.invalid" || !u.CreatedAt.Equal(s.time(seq)) || !u.IndexedAt.Equal(s.time(seq)) {
			t.Errorf("users row for %s: got %+v (present %v), want handle.invalid at %v", did, u, ok, s.time(seq))
		}
	}
	if len(m.Users) != 4 {
		t.Errorf("got %d users rows, want 4", len(m.Users))
	}
	// Within a later window, the first event naming the DID in that window counts.
	if u := s.r.Model(s2, s3).Users[extDID]; !u.CreatedAt.Equal(s.time(s2)) {
		t.Errorf("window from s2: created_at %v, want %v", u.CreatedAt, s.time(s2))
	}
	// A #sync names its DID too.
	s.r.genMu.Lock()
	p, err := s.r.gen.sync(s.r.gen.users[2])
	if err == nil {
		p.bytes, err = p.job.finish()
	}
	if err == nil {
		s.r.publish(Frame{Seq: p.seq, Time: p.t, Bytes: p.bytes, Kind: p.kind})
	}
	s.r.genMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.all().Users[s.r.DID(2)]; !ok {
		t.Error("#sync: no users row")
	}
}

func TestModelBadInput(t *testing.T) {
	s := newScenario(t)
	did := s.r.DID(0)
	at := func(path string) string { return "at://" + did + "/" + path }

	// An undecodable record: no row, and the commit's other op still applies.
	bad := s.r.gen.undecodable(collPost, testStart)
	s1 := s.commit(0, Op{Action: "create", Path: collPost + "/3kaaaaaaaaaa2", Raw: bad}, create(collLike+"/3kaaaaaaaaaa2", like(postP)))
	m := s.r.Model(s1, s1)
	if _, ok := m.Posts[at(collPost+"/3kaaaaaaaaaa2")]; ok || len(m.Likes) != 1 || m.Problems[decode.ReasonBadRecord] != 1 {
		t.Errorf("undecodable post: posts %d likes %d problems %v", len(m.Posts), len(m.Likes), m.Problems)
	}

	// A record whose block is not in the CAR.
	s2 := s.commit(0, Op{Action: "create", Path: collPost + "/3kbbbbbbbbbb2", Record: post("lost"), OmitBlock: true})
	if m := s.r.Model(s2, s2); len(m.Posts) != 0 || m.Problems[decode.ReasonMissingBlock] != 1 {
		t.Errorf("missing block: posts %d problems %v", len(m.Posts), m.Problems)
	}

	// Bad subjects: no row, and nothing named.
	s3 := s.commit(0, create(collLike+"/3kcccccccccc2", like("not a uri")), create(collFollow+"/3kcccccccccc2", follow("alice.example.com")))
	if m := s.r.Model(s3, s3); len(m.Likes) != 0 || len(m.Follows) != 0 || len(m.Users) != 1 ||
		m.Problems[decode.ReasonBadURI] != 1 || m.Problems[decode.ReasonBadDID] != 1 {
		t.Errorf("bad subjects: likes %d follows %d users %d problems %v", len(m.Likes), len(m.Follows), len(m.Users), m.Problems)
	}

	// createdAt: unparseable gives the event's time; lenient forms parse, to UTC.
	for i, tc := range []struct {
		createdAt string
		want      time.Time
	}{
		{"not a date", time.Time{}},
		{"2024-02-30T10:00:00.000Z", time.Time{}},
		{"", time.Time{}},
		{"2024-05-01T12:00:00.000", time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
		{"2024-05-01T21:00:00.000+09:00", time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
		{"2024-05-01T12:00:00.000+0000", time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
		{"2024-05-01T12:00:00.123456Z", time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC)},
	} {
		p := post("t")
		p.CreatedAt = tc.createdAt
		path := collPost + "/3kdddddddd" + string(rune('a'+i)) + "2"
		seq := s.commit(0, create(path, p))
		want := tc.want
		if want.IsZero() {
			want = s.time(seq)
		}
		if got := s.r.Model(seq, seq).Posts[at(path)].CreatedAt; !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("createdAt %q: got %v, want %v", tc.createdAt, got, want)
		}
	}

	// NUL bytes and invalid UTF-8: cleaned in every stored string, JSON included.
	p := post("bad\x00text \xff\xfe end")
	p.Tags = []string{"ok\x00", "ok", "\xffx"}
	p.Reply = &bsky.FeedPost_ReplyRef{Parent: ref(postP + "\x00"), Root: ref(postP)}
	p.Embed = &bsky.FeedPost_Embed{EmbedExternal: &bsky.EmbedExternal{LexiconTypeID: "app.bsky.embed.external",
		External: &bsky.EmbedExternal_External{Uri: "https://example.com/\x00", Title: "t\xe2\x82", Description: "d"}}}
	s4 := s.commit(0, create(collPost+"/3keeeeeeeeee2", p))
	row := s.r.Model(s4, s4).Posts[at(collPost+"/3keeeeeeeeee2")]
	if want := "badtext \uFFFD end"; row.Text != want {
		t.Errorf("text: got %q, want %q", row.Text, want)
	}
	if row.ParentURI != postP {
		t.Errorf("parent_uri: got %q", row.ParentURI)
	}
	if want := `["ok","\ufffdx"]`; !jsonEqual(t, row.Tags, []byte(want)) {
		t.Errorf("tags: got %s, want %s", row.Tags, want)
	}
	if want := `{"$type":"app.bsky.embed.external","external":{"uri":"https://example.com/","title":"t\ufffd","description":"d"}}`; !jsonEqual(t, row.Embed, []byte(want)) {
		t.Errorf("embed: got %s, want %s", row.Embed, want)
	}

	// Frames that are not events: counted, nothing else.
	s5 := s.r.AppendRaw(KindGarbage, []byte{0xff, 1, 2, 3})
	foo, err := encodeFrame(KindFoo, &comatproto.SyncSubscribeRepos_Identity{Did: s.r.DID(1), Seq: 1, Time: formatTime(testStart)}, 160)
	if err != nil {
		t.Fatal(err)
	}
	s6 := s.r.AppendRaw(KindFoo, foo)
	m = s.r.Model(s5, s6)
	if len(m.Users) != 0 || m.Events[KindGarbage] != 1 || m.Events[KindFoo] != 1 ||
		m.Problems[decode.ReasonBadFrame] != 1 || m.Problems[decode.ReasonUnknownType] != 1 || m.LastSeq != s6 {
		t.Errorf("garbage and #foo: users %d events %v problems %v last seq %d", len(m.Users), m.Events, m.Problems, m.LastSeq)
	}
}

func TestModelPostColumns(t *testing.T) {
	s := newScenario(t)
	img := lexutil.LexBlob{Ref: lexutil.LexLink(cidOf(cid.Raw, []byte("img"))), MimeType: "image/jpeg", Size: 5000}
	p := post("go #go")
	p.Reply = &bsky.FeedPost_ReplyRef{Parent: ref(postQ), Root: ref(postP)}
	p.Facets = []*bsky.RichtextFacet{{
		Index:    &bsky.RichtextFacet_ByteSlice{ByteStart: 3, ByteEnd: 6},
		Features: []*bsky.RichtextFacet_Features_Elem{{RichtextFacet_Tag: &bsky.RichtextFacet_Tag{LexiconTypeID: "app.bsky.richtext.facet#tag", Tag: "go"}}},
	}}
	p.Tags = []string{"a", "go", "a"}
	p.Langs = []string{"en"}
	p.Embed = &bsky.FeedPost_Embed{EmbedRecordWithMedia: &bsky.EmbedRecordWithMedia{
		LexiconTypeID: "app.bsky.embed.recordWithMedia",
		Record:        &bsky.EmbedRecord{LexiconTypeID: "app.bsky.embed.record", Record: ref(postP)},
		Media: &bsky.EmbedRecordWithMedia_Media{EmbedImages: &bsky.EmbedImages{LexiconTypeID: "app.bsky.embed.images",
			Images: []*bsky.EmbedImages_Image{{Alt: "", Image: &img}}}},
	}}
	path := collPost + "/3kaaaaaaaaaa2"
	seq := s.commit(0, create(path, p))
	row := s.all().Posts["at://"+s.r.DID(0)+"/"+path]
	want := decode.PostRow{URI: "at://" + s.r.DID(0) + "/" + path, AuthorDID: s.r.DID(0), Text: "go #go", ParentURI: postQ, RootURI: postP, CreatedAt: createdTime}
	if row.URI != want.URI || row.AuthorDID != want.AuthorDID || row.Text != want.Text || row.ParentURI != want.ParentURI ||
		row.RootURI != want.RootURI || !row.CreatedAt.Equal(want.CreatedAt) || !row.IndexedAt.Equal(s.time(seq)) {
		t.Errorf("got %+v, want %+v indexed at %v", row, want, s.time(seq))
	}
	if c, err := cid.Decode(row.CID); err != nil || c.Prefix().Codec != cid.DagCBOR {
		t.Errorf("cid: got %q (%v)", row.CID, err)
	}
	if want := `["a","go"]`; !jsonEqual(t, row.Tags, []byte(want)) {
		t.Errorf("tags: got %s, want %s", row.Tags, want)
	}
	if want := `[{"features":[{"$type":"app.bsky.richtext.facet#tag","tag":"go"}],"index":{"byteEnd":6,"byteStart":3}}]`; !jsonEqual(t, row.Facets, []byte(want)) {
		t.Errorf("facets: got %s, want %s", row.Facets, want)
	}
	wantEmbed := `{"$type":"app.bsky.embed.recordWithMedia",
		"record":{"$type":"app.bsky.embed.record","record":{"uri":"` + postP + `","cid":"` + ref(postP).Cid + `"}},
		"media":{"$type":"app.bsky.embed.images","images":[{"alt":"","image":{"$type":"blob","ref":{"$link":"` + img.Ref.String() + `"},"mimeType":"image/jpeg","size":5000}}]}}`
	if !jsonEqual(t, row.Embed, []byte(wantEmbed)) {
		t.Errorf("embed: got %s", row.Embed)
	}

	// No embed, facets or tags: NULL, NULL, [].
	s.commit(0, create(collPost+"/3kbbbbbbbbbb2", post("plain")))
	row = s.all().Posts["at://"+s.r.DID(0)+"/"+collPost+"/3kbbbbbbbbbb2"]
	if row.Embed != nil || row.Facets != nil || string(row.Tags) != "[]" || row.ParentURI != "" || row.RootURI != "" {
		t.Errorf("plain post: got embed %s facets %s tags %s parent %q root %q", row.Embed, row.Facets, row.Tags, row.ParentURI, row.RootURI)
	}

	// Other collections write nothing.
	s.commit(0, create(collThreadgate+"/3kaaaaaaaaaa2", &bsky.FeedThreadgate{LexiconTypeID: collThreadgate, CreatedAt: created, Post: row.URI}))
	m := s.all()
	if len(m.Posts) != 2 || m.Problems[decode.ReasonOtherCollection] != 1 {
		t.Errorf("threadgate: posts %d problems %v", len(m.Posts), m.Problems)
	}
}

// TestModelGeneratedInvariants checks rules that hold for any log: unique pairs, users rows for
// every DID a row names, and no row that a later delete removed.
func TestModelGeneratedInvariants(t *testing.T) {
	log, m := sharedLog(t)
	pairs := map[[3]string]string{}
	check := func(table, uri, actor, subject string) {
		k := [3]string{table, actor, subject}
		if other, ok := pairs[k]; ok {
			t.Errorf("%s: %s and %s share the pair (%s, %s)", table, uri, other, actor, subject)
		}
		pairs[k] = uri
		if _, ok := m.Users[actor]; !ok {
			t.Errorf("%s %s: no users row for %s", table, uri, actor)
		}
	}
	for uri, row := range m.Likes {
		check("likes", uri, row.UserDID, row.PostURI)
	}
	for uri, row := range m.Reposts {
		check("reposts", uri, row.UserDID, row.PostURI)
	}
	for uri, row := range m.Follows {
		check("follows", uri, row.ActorDID, row.SubjectDID)
		if _, ok := m.Users[row.SubjectDID]; !ok {
			t.Errorf("follow %s: no users row for the subject", uri)
		}
	}
	for uri, row := range m.Blocks {
		check("blocks", uri, row.ActorDID, row.SubjectDID)
	}
	for uri, row := range m.Posts {
		if row.Text != Clean(row.Text) {
			t.Errorf("post %s: text not cleaned", uri)
		}
	}
	if len(m.Posts) == 0 || len(m.Likes) == 0 || len(m.Follows) == 0 || len(m.Accounts) == 0 {
		t.Errorf("model of 5,000 events: %d posts, %d likes, %d follows, %d accounts", len(m.Posts), len(m.Likes), len(m.Follows), len(m.Accounts))
	}
	if got := m.Events[KindCommit] + m.Events[KindIdentity] + m.Events[KindAccount] + m.Events[KindSync] + m.Events[KindInfo] + m.Events[KindFoo] + m.Events[KindGarbage]; got != len(log) {
		t.Errorf("events counted: got %d, want %d", got, len(log))
	}
}
