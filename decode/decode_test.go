package decode

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/api/bsky"
	"github.com/bluesky-social/indigo/atproto/atdata"
	"github.com/bluesky-social/indigo/events"
	lexutil "github.com/bluesky-social/indigo/lex/util"
	"github.com/ipfs/go-cid"
	cbg "github.com/whyrusleeping/cbor-gen"
)

const (
	testDID   = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	otherDID  = "did:plc:z72i7hdynmk6r22z27h6tvur"
	parentURI = "at://did:plc:z72i7hdynmk6r22z27h6tvur/app.bsky.feed.post/3l6oveex3ii2l"
	rootURI   = "at://did:web:example.com/app.bsky.feed.post/3l6oveaaaaa2l"
)

// decodeOK decodes a frame that must decode.
func decodeOK(t *testing.T, d *Decoder, frame []byte) *Event {
	t.Helper()
	ev, err := d.Decode(frame)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return ev
}

// reasons lists the reasons of an event's problems.
func reasons(ev *Event) []Reason {
	var out []Reason
	for _, p := range ev.Problems {
		out = append(out, p.Reason)
	}
	return out
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	return b
}

func TestDecodeCollections(t *testing.T) {
	type rowCase struct {
		name string
		path string
		rec  cbg.CBORMarshaler // created
		rec2 cbg.CBORMarshaler // the update
		coll Collection
		// row returns the op's expected row fields for a record.
		row func(t *testing.T, uri, cid string, rec cbg.CBORMarshaler) Op
	}
	post2 := postRecord("edited")
	cases := []rowCase{
		{
			name: "post", path: nsidPost + "/3l6oveex3ii2a", coll: CollectionPost,
			rec: richPost(parentURI, rootURI), rec2: post2,
			row: func(t *testing.T, uri, cid string, rec cbg.CBORMarshaler) Op {
				p := rec.(*bsky.FeedPost)
				row := &PostRow{URI: uri, CID: cid, AuthorDID: testDID, Text: p.Text, CreatedAt: testCreated, Tags: []byte("[]")}
				if p.Reply != nil {
					row.ParentURI, row.RootURI = parentURI, rootURI
					row.Embed = mustJSON(t, p.Embed)
					row.Facets = mustJSON(t, p.Facets)
					row.Tags = []byte(`["news","golang"]`)
				}
				return Op{Post: row}
			},
		},
		{
			name: "like", path: nsidLike + "/3l6oveex3ii2b", coll: CollectionLike,
			rec: likeRecord(parentURI), rec2: likeRecord(rootURI),
			row: func(t *testing.T, uri, cid string, rec cbg.CBORMarshaler) Op {
				return Op{Like: &SubjectRow{URI: uri, UserDID: testDID, PostURI: rec.(*bsky.FeedLike).Subject.Uri, CreatedAt: testCreated}}
			},
		},
		{
			name: "repost", path: nsidRepost + "/3l6oveex3ii2c", coll: CollectionRepost,
			rec: repostRecord(parentURI), rec2: repostRecord(rootURI),
			row: func(t *testing.T, uri, cid string, rec cbg.CBORMarshaler) Op {
				return Op{Like: &SubjectRow{URI: uri, UserDID: testDID, PostURI: rec.(*bsky.FeedRepost).Subject.Uri, CreatedAt: testCreated}}
			},
		},
		{
			name: "follow", path: nsidFollow + "/3l6oveex3ii2d", coll: CollectionFollow,
			rec: followRecord(otherDID), rec2: followRecord("did:web:example.com"),
			row: func(t *testing.T, uri, cid string, rec cbg.CBORMarshaler) Op {
				return Op{Follow: &GraphRow{URI: uri, ActorDID: testDID, SubjectDID: rec.(*bsky.GraphFollow).Subject, CreatedAt: testCreated}}
			},
		},
		{
			name: "block", path: nsidBlock + "/3l6oveex3ii2e", coll: CollectionBlock,
			rec: blockRecord(otherDID), rec2: blockRecord("did:web:example.com"),
			row: func(t *testing.T, uri, cid string, rec cbg.CBORMarshaler) Op {
				return Op{Follow: &GraphRow{URI: uri, ActorDID: testDID, SubjectDID: rec.(*bsky.GraphBlock).Subject, CreatedAt: testCreated}}
			},
		},
		{
			name: "profile", path: nsidProfile + "/self", coll: CollectionProfile,
			rec: profileRecord("Gopher"), rec2: &bsky.ActorProfile{LexiconTypeID: nsidProfile},
			row: func(t *testing.T, uri, cid string, rec cbg.CBORMarshaler) Op {
				p := rec.(*bsky.ActorProfile)
				generic, err := atdata.UnmarshalCBOR(cborOf(t, p))
				if err != nil {
					t.Fatal(err)
				}
				row := &ProfileRow{DID: testDID, DisplayName: p.DisplayName, Description: p.Description, Record: mustJSON(t, generic)}
				if p.Avatar != nil {
					s := testBlobCID.String()
					row.AvatarCID = &s
					row.PinnedPost = []byte(`{"uri":"at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/3lbcdefghij2k","cid":"bafyreig2fjxi3rptqdgylg7e5hmjl6mcke7rn2b6cugzlqq3i4zu6rq52q"}`)
				}
				return Op{Profile: row}
			},
		},
	}
	for _, tc := range cases {
		for _, action := range []Action{ActionCreate, ActionUpdate, ActionDelete} {
			t.Run(tc.name+"/"+action.String(), func(t *testing.T) {
				r := newTestRepo(t, testDID, 50)
				var msg *comatproto.SyncSubscribeRepos_Commit
				rec := tc.rec
				switch action {
				case ActionCreate:
					msg = r.commit(create(tc.path, tc.rec))
				case ActionUpdate:
					r.commit(create(tc.path, tc.rec))
					msg = r.commit(update(tc.path, tc.rec2))
					rec = tc.rec2
				case ActionDelete:
					r.commit(create(tc.path, tc.rec))
					msg = r.commit(remove(tc.path))
				}
				ev := decodeOK(t, NewDecoder(Options{}), commitFrame(t, msg))
				if len(ev.Problems) != 0 {
					t.Fatalf("problems: %+v", ev.Problems)
				}
				if ev.Kind != KindCommit || ev.Seq != msg.Seq || ev.DID != testDID || !ev.Time.Equal(testTime) {
					t.Errorf("event = %v seq %d did %s time %v, want #commit %d %s %v", ev.Kind, ev.Seq, ev.DID, ev.Time, msg.Seq, testDID, testTime)
				}
				if len(ev.Ops) != 1 {
					t.Fatalf("got %d ops, want 1", len(ev.Ops))
				}
				uri := "at://" + testDID + "/" + tc.path
				slash := strings.IndexByte(tc.path, '/')
				want := Op{}
				if action != ActionDelete {
					c := msg.Ops[0].Cid.String()
					want = tc.row(t, uri, c, rec)
					want.CID = c
				}
				want.Action, want.Collection, want.URI = action, tc.coll, uri
				want.NSID, want.Rkey = tc.path[:slash], tc.path[slash+1:]
				if got := ev.Ops[0]; !reflect.DeepEqual(got, want) {
					t.Errorf("op:\n got %s\nwant %s", dumpOp(got), dumpOp(want))
				}
			})
		}
	}
}

// dumpOp prints an op with its row for a test failure.
func dumpOp(op Op) string {
	b, _ := json.Marshal(struct {
		Op
		Embed, Facets, Tags, Pinned, Record string
	}{Op: op, Embed: postField(op, 0), Facets: postField(op, 1), Tags: postField(op, 2), Pinned: profileField(op, 0), Record: profileField(op, 1)})
	return string(b)
}

func postField(op Op, i int) string {
	if op.Post == nil {
		return ""
	}
	return string([][]byte{op.Post.Embed, op.Post.Facets, op.Post.Tags}[i])
}

func profileField(op Op, i int) string {
	if op.Profile == nil {
		return ""
	}
	return string([][]byte{op.Profile.PinnedPost, op.Profile.Record}[i])
}

func TestDecodePostJSON(t *testing.T) {
	r := newTestRepo(t, testDID, 0)
	msg := r.commit(create(nsidPost+"/3l6oveex3ii2a", richPost(parentURI, rootURI)))
	ev := decodeOK(t, NewDecoder(Options{}), commitFrame(t, msg))
	row := ev.Ops[0].Post
	if row == nil {
		t.Fatalf("no post row; problems %+v", ev.Problems)
	}
	// DAG-JSON: the blob ref is a $link, the union members carry their $type.
	for _, want := range []string{`"$type":"app.bsky.embed.images"`, `"ref":{"$link":"` + testBlobCID.String() + `"}`, `"alt":"a gopher"`} {
		if !bytes.Contains(row.Embed, []byte(want)) {
			t.Errorf("embed %s lacks %s", row.Embed, want)
		}
	}
	for _, want := range []string{`"$type":"app.bsky.richtext.facet#tag"`, `"tag":"golang"`, `"uri":"https://go.dev"`, `"byteStart":8`} {
		if !bytes.Contains(row.Facets, []byte(want)) {
			t.Errorf("facets %s lacks %s", row.Facets, want)
		}
	}
	if !json.Valid(row.Embed) || !json.Valid(row.Facets) || !json.Valid(row.Tags) {
		t.Errorf("invalid JSON: %s %s %s", row.Embed, row.Facets, row.Tags)
	}
}

func TestDecodeTags(t *testing.T) {
	tagFacet := func(tags ...string) *bsky.RichtextFacet {
		f := &bsky.RichtextFacet{Index: &bsky.RichtextFacet_ByteSlice{ByteEnd: 1}}
		for _, tag := range tags {
			f.Features = append(f.Features, &bsky.RichtextFacet_Features_Elem{RichtextFacet_Tag: &bsky.RichtextFacet_Tag{Tag: tag}})
		}
		f.Features = append(f.Features, &bsky.RichtextFacet_Features_Elem{RichtextFacet_Mention: &bsky.RichtextFacet_Mention{Did: otherDID}})
		return f
	}
	cases := []struct {
		name    string
		tags    []string
		facets  []*bsky.RichtextFacet
		want    string
		cleaned bool
	}{
		{name: "none", want: `[]`},
		{name: "record only", tags: []string{"a", "b"}, want: `["a","b"]`},
		{name: "facets only", facets: []*bsky.RichtextFacet{tagFacet("x"), tagFacet("y")}, want: `["x","y"]`},
		{name: "mention only", facets: []*bsky.RichtextFacet{tagFacet()}, want: `[]`},
		{name: "record then facets, duplicates dropped", tags: []string{"b", "a", "b"}, facets: []*bsky.RichtextFacet{tagFacet("a", "c"), tagFacet("B", "c")}, want: `["b","a","c","B"]`},
		{name: "cleaned then deduplicated", tags: []string{"a\x00b", "ab", "x\xffy"}, want: `["ab","x` + "\uFFFD" + `y"]`, cleaned: true},
		{name: "many", tags: strings.Split("a b c d e f g h i j k l m n o p q r s a b", " "), want: `["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q","r","s"]`},
	}
	r := newTestRepo(t, testDID, 0)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := postRecord("tags")
			p.Tags, p.Facets = tc.tags, tc.facets
			msg := r.commit(create(nsidPost+"/3l6oveex3ii"+string(rune('a'+i))+"a", p))
			ev := decodeOK(t, NewDecoder(Options{}), commitFrame(t, msg))
			row := ev.Ops[0].Post
			if row == nil {
				t.Fatalf("no row: %+v", ev.Problems)
			}
			if string(row.Tags) != tc.want {
				t.Errorf("tags = %s, want %s", row.Tags, tc.want)
			}
			var wantReasons []Reason
			if tc.cleaned {
				wantReasons = []Reason{ReasonCleanedText}
			}
			if got := reasons(ev); !reflect.DeepEqual(got, wantReasons) {
				t.Errorf("problems = %v, want %v", got, wantReasons)
			}
		})
	}
}

func TestDecodeProfileRecord(t *testing.T) {
	// A profile with a field indigo's struct does not know, a legacy-free blob, bytes and a
	// link: the Record JSON keeps all of it in DAG-JSON form.
	link := atdata.CIDLink(testBlobCID)
	rec := map[string]any{
		"$type":       nsidProfile,
		"displayName": "Gopher",
		"avatar":      atdata.Blob{Ref: atdata.CIDLink(testBlobCID), MimeType: "image/png", Size: 42},
		"futureField": map[string]any{"nested": []any{"x", int64(7)}, "ref": link},
		"secret":      atdata.Bytes([]byte{1, 2, 3}),
	}
	data, err := atdata.MarshalCBOR(rec)
	if err != nil {
		t.Fatal(err)
	}
	r := newTestRepo(t, testDID, 0)
	msg := r.commit(createRaw(nsidProfile+"/self", data))
	ev := decodeOK(t, NewDecoder(Options{}), commitFrame(t, msg))
	if len(ev.Problems) != 0 {
		t.Fatalf("problems: %+v", ev.Problems)
	}
	row := ev.Ops[0].Profile
	if row == nil {
		t.Fatal("no profile row")
	}
	var got map[string]any
	if err := json.Unmarshal(row.Record, &got); err != nil {
		t.Fatalf("record JSON %s: %v", row.Record, err)
	}
	want := map[string]any{
		"$type":       nsidProfile,
		"displayName": "Gopher",
		"avatar":      map[string]any{"$type": "blob", "mimeType": "image/png", "size": 42.0, "ref": map[string]any{"$link": testBlobCID.String()}},
		"futureField": map[string]any{"nested": []any{"x", 7.0}, "ref": map[string]any{"$link": testBlobCID.String()}},
		"secret":      map[string]any{"$bytes": "AQID"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("record = %s\nwant %v", row.Record, want)
	}
	if row.AvatarCID == nil || *row.AvatarCID != testBlobCID.String() {
		t.Errorf("avatar = %v, want %s", row.AvatarCID, testBlobCID)
	}
	if row.BannerCID != nil || row.Description != nil || row.PinnedPost != nil {
		t.Errorf("absent fields set: %+v", row)
	}
}

func TestDecodeEvents(t *testing.T) {
	str := func(s string) *string { return &s }
	cases := []struct {
		name  string
		frame func(t *testing.T) []byte
		want  *Event
	}{
		{
			name: "identity with handle",
			frame: func(t *testing.T) []byte {
				return frameOf(t, &events.XRPCStreamEvent{RepoIdentity: &comatproto.SyncSubscribeRepos_Identity{Did: testDID, Handle: str("Alice.Example.COM"), Seq: 7, Time: "2025-03-14T15:09:26.535Z"}})
			},
			want: &Event{Kind: KindIdentity, Seq: 7, Time: testTime, DID: testDID, Handle: str("alice.example.com")},
		},
		{
			name: "identity without handle",
			frame: func(t *testing.T) []byte {
				return frameOf(t, &events.XRPCStreamEvent{RepoIdentity: &comatproto.SyncSubscribeRepos_Identity{Did: testDID, Seq: 8, Time: "2025-03-14T15:09:26.535Z"}})
			},
			want: &Event{Kind: KindIdentity, Seq: 8, Time: testTime, DID: testDID},
		},
		{
			name: "account active",
			frame: func(t *testing.T) []byte {
				return frameOf(t, &events.XRPCStreamEvent{RepoAccount: &comatproto.SyncSubscribeRepos_Account{Did: testDID, Active: true, Seq: 9, Time: "2025-03-14T16:09:26.535+01:00"}})
			},
			want: &Event{Kind: KindAccount, Seq: 9, Time: testTime, DID: testDID, Active: true, Status: "active"},
		},
		{
			name: "account takendown",
			frame: func(t *testing.T) []byte {
				return frameOf(t, &events.XRPCStreamEvent{RepoAccount: &comatproto.SyncSubscribeRepos_Account{Did: testDID, Status: str("takendown"), Seq: 10, Time: "2025-03-14T15:09:26.535Z"}})
			},
			want: &Event{Kind: KindAccount, Seq: 10, Time: testTime, DID: testDID, Status: "takendown"},
		},
		{
			name: "account status not known yet",
			frame: func(t *testing.T) []byte {
				return frameOf(t, &events.XRPCStreamEvent{RepoAccount: &comatproto.SyncSubscribeRepos_Account{Did: testDID, Status: str("hibernating"), Seq: 11, Time: "2025-03-14T15:09:26.535Z"}})
			},
			want: &Event{Kind: KindAccount, Seq: 11, Time: testTime, DID: testDID, Status: "hibernating"},
		},
		{
			name: "account inactive without status",
			frame: func(t *testing.T) []byte {
				return frameOf(t, &events.XRPCStreamEvent{RepoAccount: &comatproto.SyncSubscribeRepos_Account{Did: testDID, Seq: 12, Time: "2025-03-14T15:09:26.535Z"}})
			},
			want: &Event{Kind: KindAccount, Seq: 12, Time: testTime, DID: testDID},
		},
		{
			name: "sync",
			frame: func(t *testing.T) []byte {
				return frameOf(t, &events.XRPCStreamEvent{RepoSync: &comatproto.SyncSubscribeRepos_Sync{Did: testDID, Rev: "3l6oveex3ii2a", Blocks: []byte{1, 2, 3}, Seq: 13, Time: "2025-03-14T15:09:26.535Z"}})
			},
			want: &Event{Kind: KindSync, Seq: 13, Time: testTime, DID: testDID},
		},
		{
			name: "info",
			frame: func(t *testing.T) []byte {
				return frameOf(t, &events.XRPCStreamEvent{RepoInfo: &comatproto.SyncSubscribeRepos_Info{Name: "OutdatedCursor", Message: str("cursor too old")}})
			},
			want: &Event{Kind: KindInfo, Name: "OutdatedCursor"},
		},
		{
			name: "error frame",
			frame: func(t *testing.T) []byte {
				return frameOf(t, &events.XRPCStreamEvent{Error: &events.ErrorFrame{Error: "FutureCursor", Message: "cursor in the future"}})
			},
			want: &Event{Kind: KindError, Name: "FutureCursor"},
		},
		{
			name: "unknown type",
			frame: func(t *testing.T) []byte {
				return rawFrame(t, &events.EventHeader{Op: 1, MsgType: "#labels"}, &comatproto.SyncSubscribeRepos_Sync{Did: testDID, Seq: 14, Time: "2025-03-14T15:09:26.535Z"})
			},
			want: &Event{Kind: KindUnknown, Seq: 14, Time: testTime, DID: testDID, Problems: []Problem{{Reason: ReasonUnknownType, Subject: testDID, Detail: `op 1 type "#labels"`}}},
		},
		{
			name: "unknown op",
			frame: func(t *testing.T) []byte {
				return rawFrame(t, &events.EventHeader{Op: 2, MsgType: "#commit"}, &comatproto.SyncSubscribeRepos_Info{Name: "x"})
			},
			want: &Event{Kind: KindUnknown, Problems: []Problem{{Reason: ReasonUnknownType, Detail: `op 2 type "#commit"`}}},
		},
		{
			name: "bad event time",
			frame: func(t *testing.T) []byte {
				return frameOf(t, &events.XRPCStreamEvent{RepoSync: &comatproto.SyncSubscribeRepos_Sync{Did: testDID, Seq: 15, Time: "teatime"}})
			},
			want: &Event{Kind: KindSync, Seq: 15, DID: testDID, Problems: []Problem{{Reason: ReasonBadTime, Subject: testDID, Detail: `event time "teatime"`}}},
		},
		{
			name: "lenient event time",
			frame: func(t *testing.T) []byte {
				return frameOf(t, &events.XRPCStreamEvent{RepoSync: &comatproto.SyncSubscribeRepos_Sync{Did: testDID, Seq: 16, Time: "2025-03-14T15:09:26.535"}})
			},
			want: &Event{Kind: KindSync, Seq: 16, Time: testTime, DID: testDID},
		},
		{
			name: "identity with a bad DID and a dirty handle",
			frame: func(t *testing.T) []byte {
				return frameOf(t, &events.XRPCStreamEvent{RepoIdentity: &comatproto.SyncSubscribeRepos_Identity{Did: "did:bad\x00", Handle: str("A\x00b.test"), Seq: 17, Time: "2025-03-14T15:09:26.535Z"}})
			},
			want: &Event{Kind: KindIdentity, Seq: 17, Time: testTime, DID: "did:bad", Handle: str("ab.test"), Problems: []Problem{
				{Reason: ReasonBadDID, Subject: "did:bad\x00", Detail: "DID syntax didn't validate via regex"},
				{Reason: ReasonCleanedText, Subject: "did:bad", Detail: "handle"},
			}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := decodeOK(t, NewDecoder(Options{}), tc.frame(t))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// problemCommit is a commit of four good ops around one op under test (index 1):
// a like create, the op under test, a follow create and a post delete.
func problemCommit(t *testing.T, r *testRepo, op testOp) *comatproto.SyncSubscribeRepos_Commit {
	t.Helper()
	r.commit(create(nsidPost+"/3l6oveex3ii2z", postRecord("to be deleted")))
	return r.commit(
		create(nsidLike+"/3l6oveex3ii2a", likeRecord(parentURI)),
		op,
		create(nsidFollow+"/3l6oveex3ii2b", followRecord(otherDID)),
		remove(nsidPost+"/3l6oveex3ii2z"),
	)
}

// checkGoodOps checks the four good ops of problemCommit.
func checkGoodOps(t *testing.T, ev *Event) {
	t.Helper()
	if len(ev.Ops) != 4 {
		t.Fatalf("got %d ops, want 4", len(ev.Ops))
	}
	if l := ev.Ops[0].Like; l == nil || l.PostURI != parentURI {
		t.Errorf("like op lost: %s", dumpOp(ev.Ops[0]))
	}
	if f := ev.Ops[2].Follow; f == nil || f.SubjectDID != otherDID {
		t.Errorf("follow op lost: %s", dumpOp(ev.Ops[2]))
	}
	if d := ev.Ops[3]; d.Action != ActionDelete || d.Collection != CollectionPost || d.URI != "at://"+testDID+"/"+nsidPost+"/3l6oveex3ii2z" {
		t.Errorf("delete op lost: %s", dumpOp(d))
	}
}

func TestDecodeProblems(t *testing.T) {
	rawRecord := func(t *testing.T, m map[string]any) []byte {
		b, err := atdata.MarshalCBOR(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	postPath := nsidPost + "/3l6oveex3ii2c"
	postURI := "at://" + testDID + "/" + postPath
	cases := []struct {
		name   string
		op     func(t *testing.T) testOp
		mutate func(m *comatproto.SyncSubscribeRepos_Commit) // applied to the op under test (index 1)
		want   []Problem
		row    bool                                 // whether the op under test keeps its row
		check  func(t *testing.T, op Op, ev *Event) // the op under test
	}{
		{
			name: "undecodable record",
			op: func(t *testing.T) testOp {
				return createRaw(postPath, rawRecord(t, map[string]any{"$type": nsidPost, "text": int64(42), "createdAt": testCreatedStr}))
			},
			want: []Problem{{Reason: ReasonBadRecord, Subject: postURI}},
		},
		{
			name: "record not a map",
			op:   func(t *testing.T) testOp { return createRaw(postPath, []byte{0x83, 1, 2, 3}) },
			want: []Problem{{Reason: ReasonBadRecord, Subject: postURI}},
		},
		{
			name: "record with trailing bytes",
			op:   func(t *testing.T) testOp { return createRaw(postPath, append(cborOf(t, postRecord("x")), 0)) },
			want: []Problem{{Reason: ReasonBadRecord, Subject: postURI}},
		},
		{
			name: "record of another type",
			op:   func(t *testing.T) testOp { return create(postPath, likeRecord(parentURI)) },
			want: []Problem{{Reason: ReasonBadRecord, Subject: postURI}},
		},
		{
			name: "missing block",
			op:   func(t *testing.T) testOp { return create(postPath, postRecord("hi")) },
			mutate: func(m *comatproto.SyncSubscribeRepos_Commit) {
				c := cidFor(t, []byte("elsewhere"))
				m.Ops[1].Cid = (*lexutil.LexLink)(&c)
			},
			want: []Problem{{Reason: ReasonMissingBlock, Subject: postURI}},
		},
		{
			name:   "create without cid",
			op:     func(t *testing.T) testOp { return create(postPath, postRecord("hi")) },
			mutate: func(m *comatproto.SyncSubscribeRepos_Commit) { m.Ops[1].Cid = nil },
			want:   []Problem{{Reason: ReasonMissingBlock, Subject: postURI}},
		},
		{
			name: "follow of a bad DID",
			op: func(t *testing.T) testOp {
				return create(nsidFollow+"/3l6oveex3ii2c", followRecord("alice.example.com"))
			},
			want: []Problem{{Reason: ReasonBadDID, Subject: "at://" + testDID + "/" + nsidFollow + "/3l6oveex3ii2c"}},
		},
		{
			name: "block of a bad DID",
			op:   func(t *testing.T) testOp { return create(nsidBlock+"/3l6oveex3ii2c", blockRecord("did:plc:")) },
			want: []Problem{{Reason: ReasonBadDID, Subject: "at://" + testDID + "/" + nsidBlock + "/3l6oveex3ii2c"}},
		},
		{
			name: "like of a bad URI",
			op: func(t *testing.T) testOp {
				return create(nsidLike+"/3l6oveex3ii2c", likeRecord("https://bsky.app/profile/x"))
			},
			want: []Problem{{Reason: ReasonBadURI, Subject: "at://" + testDID + "/" + nsidLike + "/3l6oveex3ii2c"}},
		},
		{
			name: "repost without subject",
			op: func(t *testing.T) testOp {
				return create(nsidRepost+"/3l6oveex3ii2c", &bsky.FeedRepost{LexiconTypeID: nsidRepost, CreatedAt: testCreatedStr})
			},
			want: []Problem{{Reason: ReasonBadURI, Subject: "at://" + testDID + "/" + nsidRepost + "/3l6oveex3ii2c"}},
		},
		{
			name: "bad createdAt",
			row:  true,
			op: func(t *testing.T) testOp {
				p := postRecord("when?")
				p.CreatedAt = "last tuesday"
				return create(postPath, p)
			},
			want: []Problem{{Reason: ReasonBadTime, Subject: postURI}},
			check: func(t *testing.T, op Op, ev *Event) {
				if op.Post == nil || !op.Post.CreatedAt.Equal(testTime) {
					t.Errorf("post %s: want createdAt = event time %v", dumpOp(op), testTime)
				}
			},
		},
		{
			name: "lenient createdAt",
			row:  true,
			op: func(t *testing.T) testOp {
				p := postRecord("when?")
				p.CreatedAt = "2025-03-14T15:09:20"
				return create(postPath, p)
			},
			check: func(t *testing.T, op Op, ev *Event) {
				if op.Post == nil || !op.Post.CreatedAt.Equal(testCreated) {
					t.Errorf("post %s: want createdAt %v", dumpOp(op), testCreated)
				}
			},
		},
		{
			name: "NUL and invalid UTF-8 in text",
			row:  true,
			op:   func(t *testing.T) testOp { return create(postPath, postRecord("a\x00b\xff\xfec\x00")) },
			want: []Problem{{Reason: ReasonCleanedText, Subject: postURI}},
			check: func(t *testing.T, op Op, ev *Event) {
				if op.Post == nil || op.Post.Text != "ab\uFFFDc" {
					t.Errorf("post %s: want text %q", dumpOp(op), "ab\uFFFDc")
				}
			},
		},
		{
			name: "NUL and invalid UTF-8 in embed and facets",
			row:  true,
			op: func(t *testing.T) testOp {
				p := postRecord("clean text")
				p.Embed = &bsky.FeedPost_Embed{EmbedExternal: &bsky.EmbedExternal{External: &bsky.EmbedExternal_External{
					Title: "ti\x00t\xffl\x00\xfee", Description: "\\u0000 stays", Uri: "https://example.com/\xc3",
				}}}
				p.Facets = []*bsky.RichtextFacet{{
					Index:    &bsky.RichtextFacet_ByteSlice{ByteEnd: 5},
					Features: []*bsky.RichtextFacet_Features_Elem{{RichtextFacet_Link: &bsky.RichtextFacet_Link{Uri: "https://x.test/\x00"}}},
				}}
				return create(postPath, p)
			},
			want: []Problem{{Reason: ReasonCleanedText, Subject: postURI}},
			check: func(t *testing.T, op Op, ev *Event) {
				if op.Post == nil {
					t.Fatalf("no row")
				}
				for _, b := range [][]byte{op.Post.Embed, op.Post.Facets} {
					if jsonHoldsNUL(t, b) {
						t.Errorf("JSON %s holds a NUL", b)
					}
				}
				var embed struct {
					External struct{ Title, Description, URI string }
				}
				if err := json.Unmarshal(op.Post.Embed, &embed); err != nil {
					t.Fatal(err)
				}
				if want := "tit\uFFFDl\uFFFDe"; embed.External.Title != want {
					t.Errorf("title = %q, want %q", embed.External.Title, want)
				}
				if want := `\u0000 stays`; embed.External.Description != want {
					t.Errorf("description = %q, want %q", embed.External.Description, want)
				}
				if want := "https://example.com/\uFFFD"; embed.External.URI != want {
					t.Errorf("uri = %q, want %q", embed.External.URI, want)
				}
				if !bytes.Contains(op.Post.Facets, []byte(`"uri":"https://x.test/"`)) {
					t.Errorf("facets = %s", op.Post.Facets)
				}
			},
		},
		{
			name: "embed of a type indigo does not know",
			row:  true,
			op: func(t *testing.T) testOp {
				return createRaw(postPath, rawRecord(t, map[string]any{
					"$type": nsidPost, "text": "hi", "createdAt": testCreatedStr,
					"embed": map[string]any{"$type": "app.bsky.embed.hologram", "depth": int64(3)},
				}))
			},
			check: func(t *testing.T, op Op, ev *Event) {
				if op.Post == nil || string(op.Post.Embed) != `{"$type":"app.bsky.embed.hologram","depth":3}` {
					t.Errorf("post %s: want the embed kept as is", dumpOp(op))
				}
			},
		},
		{
			// indigo decodes the post (its union keeps an unknown member as raw CBOR), but no
			// JSON holds a float: the post is kept, its embed NULL.
			name: "embed of an unknown type that is not atproto data",
			row:  true,
			op: func(t *testing.T) testOp {
				return createRaw(postPath, rawRecord(t, map[string]any{
					"$type": nsidPost, "text": "hi", "createdAt": testCreatedStr,
					"embed":  map[string]any{"$type": "app.bsky.embed.hologram", "depth": 1.5},
					"facets": []any{map[string]any{"index": map[string]any{"byteStart": int64(0), "byteEnd": int64(2)}, "features": []any{map[string]any{"$type": "app.bsky.richtext.facet#tag", "tag": "kept"}}}},
				}))
			},
			want: []Problem{{Reason: ReasonDroppedField, Subject: postURI}},
			check: func(t *testing.T, op Op, ev *Event) {
				if op.Post == nil || op.Post.Embed != nil || op.Post.Text != "hi" || !bytes.Contains(op.Post.Facets, []byte(`"tag":"kept"`)) {
					t.Errorf("post %s: want text and facets kept, embed NULL", dumpOp(op))
				}
			},
		},
		{
			name: "facet feature of an unknown type that is not atproto data",
			row:  true,
			op: func(t *testing.T) testOp {
				return createRaw(postPath, rawRecord(t, map[string]any{
					"$type": nsidPost, "text": "hi", "createdAt": testCreatedStr,
					"embed":  map[string]any{"$type": "app.bsky.embed.hologram", "depth": int64(3)},
					"facets": []any{map[string]any{"index": map[string]any{"byteStart": int64(0), "byteEnd": int64(2)}, "features": []any{map[string]any{"$type": "com.example.facet#score", "v": 0.5}}}},
				}))
			},
			want: []Problem{{Reason: ReasonDroppedField, Subject: postURI}},
			check: func(t *testing.T, op Op, ev *Event) {
				if op.Post == nil || op.Post.Facets != nil || string(op.Post.Embed) != `{"$type":"app.bsky.embed.hologram","depth":3}` {
					t.Errorf("post %s: want the embed kept, facets NULL", dumpOp(op))
				}
			},
		},
		{
			name: "embed whose typed form indigo rejects",
			op: func(t *testing.T) testOp {
				return createRaw(postPath, rawRecord(t, map[string]any{
					"$type": nsidPost, "text": "hi", "createdAt": testCreatedStr,
					"embed": map[string]any{"$type": "app.bsky.embed.external", "external": int64(1), "x": 1.5},
				}))
			},
			want: []Problem{{Reason: ReasonBadRecord, Subject: postURI}},
		},
		{
			name: "reply with a bad parent URI",
			row:  true,
			op:   func(t *testing.T) testOp { return create(postPath, richPost("at://not a uri", rootURI)) },
			want: []Problem{{Reason: ReasonBadURI, Subject: postURI}},
			check: func(t *testing.T, op Op, ev *Event) {
				if op.Post == nil || op.Post.ParentURI != "" || op.Post.RootURI != rootURI {
					t.Errorf("post %s: want no parent, root %s", dumpOp(op), rootURI)
				}
			},
		},
		{
			name: "other collection",
			op: func(t *testing.T) testOp {
				return create("app.bsky.graph.listitem/3l6oveex3ii2c", &bsky.GraphListitem{LexiconTypeID: "app.bsky.graph.listitem", Subject: otherDID, CreatedAt: testCreatedStr})
			},
			want: []Problem{{Reason: ReasonOtherCollection, Subject: "at://" + testDID + "/app.bsky.graph.listitem/3l6oveex3ii2c"}},
			check: func(t *testing.T, op Op, ev *Event) {
				if op.Collection != CollectionOther || op.NSID != "app.bsky.graph.listitem" || op.Rkey != "3l6oveex3ii2c" || op.CID == "" {
					t.Errorf("op %s", dumpOp(op))
				}
			},
		},
		{
			name: "profile rkey not self",
			op:   func(t *testing.T) testOp { return create(nsidProfile+"/other", profileRecord("x")) },
			want: []Problem{{Reason: ReasonBadURI, Subject: "at://" + testDID + "/" + nsidProfile + "/other"}},
			check: func(t *testing.T, op Op, ev *Event) {
				if op.Collection != CollectionOther {
					t.Errorf("collection = %d, want Other", op.Collection)
				}
			},
		},
		{
			name:   "path without rkey",
			op:     func(t *testing.T) testOp { return create(postPath, postRecord("x")) },
			mutate: func(m *comatproto.SyncSubscribeRepos_Commit) { m.Ops[1].Path = nsidPost },
			want:   []Problem{{Reason: ReasonBadURI, Subject: "at://" + testDID + "/" + nsidPost}},
		},
		{
			name:   "path with a bad rkey",
			op:     func(t *testing.T) testOp { return create(postPath, postRecord("x")) },
			mutate: func(m *comatproto.SyncSubscribeRepos_Commit) { m.Ops[1].Path = nsidPost + "/a b" },
			want:   []Problem{{Reason: ReasonBadURI, Subject: "at://" + testDID + "/" + nsidPost + "/a b"}},
		},
		{
			name:   "path with a bad NSID",
			op:     func(t *testing.T) testOp { return create(postPath, postRecord("x")) },
			mutate: func(m *comatproto.SyncSubscribeRepos_Commit) { m.Ops[1].Path = "app..post/abc" },
			want:   []Problem{{Reason: ReasonBadURI, Subject: "at://" + testDID + "/app..post/abc"}},
		},
		{
			name: "NUL and invalid UTF-8 in a profile",
			op: func(t *testing.T) testOp {
				return createRaw(nsidProfile+"/self", rawRecord(t, map[string]any{
					"$type": nsidProfile, "displayName": "Go\x00pher", "description": "bad \xff byte",
					"future\x00Field": map[string]any{"deep": []any{"x\x00y"}},
				}))
			},
			row:  true,
			want: []Problem{{Reason: ReasonCleanedText, Subject: "at://" + testDID + "/" + nsidProfile + "/self"}},
			check: func(t *testing.T, op Op, ev *Event) {
				p := op.Profile
				if p == nil || *p.DisplayName != "Gopher" || *p.Description != "bad \uFFFD byte" {
					t.Fatalf("profile %s", dumpOp(op))
				}
				if want := `{"$type":"app.bsky.actor.profile","description":"bad � byte","displayName":"Gopher","futureField":{"deep":["xy"]}}`; string(p.Record) != want {
					t.Errorf("record = %s, want %s", p.Record, want)
				}
			},
		},
		{
			// indigo's struct ignores the field; profile_record, which would hold it, is NULL
			// and the columns are set (an update must not clear them).
			name: "profile with a field that is not atproto data",
			op: func(t *testing.T) testOp {
				return createRaw(nsidProfile+"/self", rawRecord(t, map[string]any{
					"$type": nsidProfile, "displayName": "Gopher", "description": "digs", "score": 0.5,
				}))
			},
			row:  true,
			want: []Problem{{Reason: ReasonDroppedField, Subject: "at://" + testDID + "/" + nsidProfile + "/self"}},
			check: func(t *testing.T, op Op, ev *Event) {
				p := op.Profile
				if p == nil || p.DisplayName == nil || *p.DisplayName != "Gopher" || p.Description == nil || *p.Description != "digs" || p.Record != nil {
					t.Errorf("profile %s: want the columns set, profile_record NULL", dumpOp(op))
				}
			},
		},
		{
			name:   "bad action",
			op:     func(t *testing.T) testOp { return create(postPath, postRecord("x")) },
			mutate: func(m *comatproto.SyncSubscribeRepos_Commit) { m.Ops[1].Action = "upsert" },
			want:   []Problem{{Reason: ReasonBadAction, Subject: postURI}},
			check: func(t *testing.T, op Op, ev *Event) {
				if op.Action != 0 || op.Post != nil {
					t.Errorf("op %s: want no action, no row", dumpOp(op))
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRepo(t, testDID, 20)
			msg := problemCommit(t, r, tc.op(t))
			if tc.mutate != nil {
				tc.mutate(msg)
			}
			ev := decodeOK(t, NewDecoder(Options{}), commitFrame(t, msg))
			checkGoodOps(t, ev)
			checkProblems(t, ev, tc.want)
			op := ev.Ops[1]
			hasRow := op.Post != nil || op.Like != nil || op.Follow != nil || op.Profile != nil
			if hasRow != tc.row {
				t.Errorf("op under test: has a row %v, want %v: %s", hasRow, tc.row, dumpOp(op))
			}
			if tc.check != nil {
				tc.check(t, op, ev)
			}
		})
	}
}

// checkProblems compares problems by reason and subject (details are indigo's error texts).
func checkProblems(t *testing.T, ev *Event, want []Problem) {
	t.Helper()
	var got []Problem
	for _, p := range ev.Problems {
		if len(p.Detail) > maxDetail || len(p.Subject) > maxSubject {
			t.Errorf("problem %+v: fields too long", p)
		}
		got = append(got, Problem{Reason: p.Reason, Subject: p.Subject})
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems = %+v\nwant %+v", ev.Problems, want)
	}
}

func TestDecodeCommitProblems(t *testing.T) {
	t.Run("bad CAR", func(t *testing.T) {
		for name, mutate := range map[string]func([]byte) []byte{
			"garbage":   func([]byte) []byte { return []byte("not a CAR file") },
			"empty":     func([]byte) []byte { return nil },
			"truncated": func(b []byte) []byte { return b[:len(b)-7] },
			"version 2": func(b []byte) []byte {
				b = bytes.Clone(b)
				b[bytes.Index(b, []byte("version"))+7] = 2
				return b
			},
		} {
			t.Run(name, func(t *testing.T) {
				r := newTestRepo(t, testDID, 20)
				msg := problemCommit(t, r, create(nsidRepost+"/3l6oveex3ii2c", repostRecord(parentURI)))
				msg.Blocks = mutate(msg.Blocks)
				ev := decodeOK(t, NewDecoder(Options{}), commitFrame(t, msg))
				base := "at://" + testDID + "/"
				checkProblems(t, ev, []Problem{
					{Reason: ReasonBadCAR, Subject: testDID},
					{Reason: ReasonMissingBlock, Subject: base + nsidLike + "/3l6oveex3ii2a"},
					{Reason: ReasonMissingBlock, Subject: base + nsidRepost + "/3l6oveex3ii2c"},
					{Reason: ReasonMissingBlock, Subject: base + nsidFollow + "/3l6oveex3ii2b"},
				})
				if len(ev.Ops) != 4 {
					t.Fatalf("got %d ops, want 4", len(ev.Ops))
				}
				if d := ev.Ops[3]; d.Action != ActionDelete || d.URI != base+nsidPost+"/3l6oveex3ii2z" {
					t.Errorf("delete op lost: %s", dumpOp(d))
				}
				for _, op := range ev.Ops[:3] {
					if op.Action != ActionCreate || op.CID == "" || op.Like != nil || op.Follow != nil {
						t.Errorf("create op %s: want action and cid, no row", dumpOp(op))
					}
				}
			})
		}
	})
	t.Run("bad repo DID", func(t *testing.T) {
		r := newTestRepo(t, testDID, 20)
		msg := problemCommit(t, r, create(nsidRepost+"/3l6oveex3ii2c", repostRecord(parentURI)))
		msg.Repo = "did:plc:has space"
		ev := decodeOK(t, NewDecoder(Options{}), commitFrame(t, msg))
		checkProblems(t, ev, []Problem{{Reason: ReasonBadDID, Subject: "did:plc:has space"}})
		if len(ev.Ops) != 0 || ev.Seq != msg.Seq || !ev.Time.Equal(testTime) {
			t.Errorf("event %+v: want seq and time, no ops", ev)
		}
	})
	t.Run("bad event time", func(t *testing.T) {
		r := newTestRepo(t, testDID, 20)
		msg := problemCommit(t, r, create(nsidRepost+"/3l6oveex3ii2c", repostRecord(parentURI)))
		msg.Time = "2025-13-01T00:00:00Z"
		ev := decodeOK(t, NewDecoder(Options{}), commitFrame(t, msg))
		checkGoodOps(t, ev)
		checkProblems(t, ev, []Problem{{Reason: ReasonBadTime, Subject: testDID}})
		if !ev.Time.IsZero() || !ev.Ops[0].Like.CreatedAt.Equal(testCreated) {
			t.Errorf("time %v, like createdAt %v: want zero and the record's", ev.Time, ev.Ops[0].Like.CreatedAt)
		}
	})
	t.Run("filtered collections", func(t *testing.T) {
		r := newTestRepo(t, testDID, 20)
		msg := problemCommit(t, r, create(nsidRepost+"/3l6oveex3ii2c", repostRecord(parentURI)))
		ev := decodeOK(t, NewDecoder(Options{Collections: []Collection{CollectionFollow, CollectionRepost}}), commitFrame(t, msg))
		base := "at://" + testDID + "/"
		checkProblems(t, ev, []Problem{
			{Reason: ReasonFiltered, Subject: base + nsidLike + "/3l6oveex3ii2a"},
			{Reason: ReasonFiltered, Subject: base + nsidPost + "/3l6oveex3ii2z"},
		})
		if ev.Ops[0].Like != nil || ev.Ops[0].Collection != CollectionLike || ev.Ops[0].CID == "" {
			t.Errorf("filtered like %s: want collection and cid, no row", dumpOp(ev.Ops[0]))
		}
		if ev.Ops[1].Like == nil || ev.Ops[2].Follow == nil {
			t.Errorf("wanted rows lost: %s %s", dumpOp(ev.Ops[1]), dumpOp(ev.Ops[2]))
		}
	})
	t.Run("filtered record is not read", func(t *testing.T) {
		r := newTestRepo(t, testDID, 0)
		msg := r.commit(createRaw(nsidPost+"/3l6oveex3ii2c", []byte{0xff}))
		ev := decodeOK(t, NewDecoder(Options{Collections: []Collection{CollectionLike}}), commitFrame(t, msg))
		checkProblems(t, ev, []Problem{{Reason: ReasonFiltered, Subject: "at://" + testDID + "/" + nsidPost + "/3l6oveex3ii2c"}})
	})
	t.Run("many blocks", func(t *testing.T) {
		// Over linearMax blocks: the lookup goes through the hash table.
		r := newTestRepo(t, testDID, 200)
		var ops []testOp
		for i := range 40 {
			ops = append(ops, create(nsidLike+"/3l6ovee"+strings.Repeat(string(rune('a'+i%26)), 5)+string(rune('a'+i/26)), likeRecord(parentURI)))
		}
		msg := r.commit(ops...)
		d := NewDecoder(Options{})
		ev := decodeOK(t, d, commitFrame(t, msg))
		checkProblems(t, ev, nil)
		if len(d.car.blocks) <= linearMax {
			t.Fatalf("only %d blocks", len(d.car.blocks))
		}
		for i, op := range ev.Ops {
			if op.Like == nil || op.CID != msg.Ops[i].Cid.String() {
				t.Errorf("op %d: %s", i, dumpOp(op))
			}
		}
	})
}

func TestDecodeBadFrames(t *testing.T) {
	r := newTestRepo(t, testDID, 20)
	good := commitFrame(t, problemCommit(t, r, create(nsidPost+"/3l6oveex3ii2c", richPost(parentURI, rootURI))))
	hdr := cborOf(t, &events.EventHeader{Op: 1, MsgType: "#commit"})
	cases := map[string][]byte{
		"empty":                   nil,
		"garbage":                 []byte("\x00\x01garbage"),
		"header only":             hdr,
		"header not a map":        append([]byte{0x82, 0x01, 0x02}, good[len(hdr):]...),
		"body not a map":          append(bytes.Clone(hdr), 0x83, 0x01, 0x02, 0x03),
		"trailing byte":           append(bytes.Clone(good), 0x00),
		"indefinite-length body":  append(bytes.Clone(hdr), 0xbf, 0xff),
		"indefinite-length array": append(bytes.Clone(hdr), 0xa1, 0x63, 'o', 'p', 's', 0x9f, 0xff),
		"reserved additional":     append(bytes.Clone(hdr), 0xa1, 0x63, 's', 'e', 'q', 0x1c),
		"huge string claim":       append(bytes.Clone(hdr), 0xa1, 0x66, 'b', 'l', 'o', 'c', 'k', 's', 0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
		"huge map claim":          append(bytes.Clone(hdr), 0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
		"seq of the wrong type":   append(bytes.Clone(hdr), 0xa1, 0x63, 's', 'e', 'q', 0x61, 'x'),
	}
	for name, frame := range cases {
		t.Run(name, func(t *testing.T) {
			if ev, err := NewDecoder(Options{}).Decode(frame); err == nil {
				t.Errorf("Decode = %+v, want error", ev)
			}
			if h, err := PeekHeader(frame); err == nil {
				t.Errorf("PeekHeader = %+v, want error", h)
			}
		})
	}
	t.Run("every truncation", func(t *testing.T) {
		d := NewDecoder(Options{})
		for n := range len(good) {
			if _, err := d.Decode(good[:n]); err == nil {
				t.Errorf("Decode of %d of %d bytes: no error", n, len(good))
			}
			if _, err := PeekHeader(good[:n]); err == nil {
				t.Errorf("PeekHeader of %d of %d bytes: no error", n, len(good))
			}
		}
		if _, err := d.Decode(good); err != nil {
			t.Errorf("Decode of the whole frame after the truncations: %v", err)
		}
	})
}

func TestDecoderReuse(t *testing.T) {
	// One Decoder over many frames gives what a fresh one gives for each: nothing leaks from
	// one event into the next through the reused buffers, and no event points into its frame
	// (the caller may reuse frame buffers).
	frames := benchFrames(t, 60)
	shared := NewDecoder(Options{})
	var kept []*Event
	for _, f := range frames {
		buf := bytes.Clone(f)
		ev, err := shared.Decode(buf)
		if err != nil {
			t.Fatal(err)
		}
		clear(buf)
		kept = append(kept, ev)
	}
	for i, f := range frames {
		want, err := NewDecoder(Options{}).Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(kept[i], want) {
			t.Errorf("frame %d: shared decoder gave %+v, fresh %+v", i, kept[i], want)
		}
	}
}

func TestTruncateProblemFields(t *testing.T) {
	long := "did:plc:" + strings.Repeat("é", 300)
	r := newTestRepo(t, testDID, 0)
	msg := r.commit(create(nsidFollow+"/3l6oveex3ii2c", followRecord(otherDID)))
	msg.Repo = long
	ev := decodeOK(t, NewDecoder(Options{}), commitFrame(t, msg))
	if len(ev.Problems) != 1 {
		t.Fatalf("problems %+v", ev.Problems)
	}
	p := ev.Problems[0]
	if len(p.Subject) > maxSubject || len(p.Subject) < maxSubject-3 || !strings.HasPrefix(long, p.Subject) || !utf8Valid(p.Subject) {
		t.Errorf("subject %q (%d bytes): want a valid prefix of at most %d bytes", p.Subject, len(p.Subject), maxSubject)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }

func TestOpCIDMatchesIndigo(t *testing.T) {
	r := newTestRepo(t, testDID, 0)
	msg := r.commit(create(nsidLike+"/3l6oveex3ii2c", likeRecord(parentURI)))
	ev := decodeOK(t, NewDecoder(Options{}), commitFrame(t, msg))
	if want := cid.Cid(*msg.Ops[0].Cid).String(); ev.Ops[0].CID != want {
		t.Errorf("cid = %s, want %s", ev.Ops[0].CID, want)
	}
}

// jsonHoldsNUL reports whether a string (or key) in the JSON holds a NUL, which jsonb rejects.
func jsonHoldsNUL(t *testing.T, b []byte) bool {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("invalid JSON %s: %v", b, err)
	}
	var walk func(v any) bool
	walk = func(v any) bool {
		switch v := v.(type) {
		case string:
			return strings.Contains(v, "\x00")
		case []any:
			for _, e := range v {
				if walk(e) {
					return true
				}
			}
		case map[string]any:
			for k, e := range v {
				if strings.Contains(k, "\x00") || walk(e) {
					return true
				}
			}
		}
		return false
	}
	return walk(v)
}
