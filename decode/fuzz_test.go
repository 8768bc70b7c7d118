package decode

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/events"
	lexutil "github.com/bluesky-social/indigo/lex/util"
	blocks "github.com/ipfs/go-block-format"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the committed fuzz seed corpus under testdata/fuzz")

// seedFrames are the frame seeds: a real commit of several collections and every other
// event type, plus some broken ones.
func seedFrames(tb testing.TB) map[string][]byte {
	tb.Helper()
	str := func(s string) *string { return &s }
	r := newTestRepo(tb, testDID, 30)
	r.commit(create(nsidPost+"/3l6oveex3ii2z", postRecord("old")))
	commit := commitFrame(tb, r.commit(
		create(nsidPost+"/3l6oveex3ii2a", richPost(parentURI, rootURI)),
		create(nsidLike+"/3l6oveex3ii2b", likeRecord(parentURI)),
		create(nsidFollow+"/3l6oveex3ii2c", followRecord(otherDID)),
		update(nsidProfile+"/self", profileRecord("Gopher")),
		create("app.bsky.graph.listitem/3l6oveex3ii2d", followRecord(otherDID)),
		remove(nsidPost+"/3l6oveex3ii2z"),
	))
	badCAR := r.commit(create(nsidRepost+"/3l6oveex3ii2e", repostRecord(parentURI)))
	badCAR.Blocks = badCAR.Blocks[:len(badCAR.Blocks)/2]
	return map[string][]byte{
		"commit":   commit,
		"bad-car":  commitFrame(tb, badCAR),
		"identity": frameOf(tb, &events.XRPCStreamEvent{RepoIdentity: &comatproto.SyncSubscribeRepos_Identity{Did: testDID, Handle: str("Alice.test"), Seq: 5, Time: "2025-03-14T15:09:26.535Z"}}),
		"account":  frameOf(tb, &events.XRPCStreamEvent{RepoAccount: &comatproto.SyncSubscribeRepos_Account{Did: testDID, Status: str("takendown"), Seq: 6, Time: "2025-03-14T15:09:26.535Z"}}),
		"sync":     frameOf(tb, &events.XRPCStreamEvent{RepoSync: &comatproto.SyncSubscribeRepos_Sync{Did: testDID, Blocks: []byte{1, 2}, Rev: "3l6oveex3ii2a", Seq: 7, Time: "2025-03-14T15:09:26.535Z"}}),
		"info":     frameOf(tb, &events.XRPCStreamEvent{RepoInfo: &comatproto.SyncSubscribeRepos_Info{Name: "OutdatedCursor", Message: str("old")}}),
		"error":    frameOf(tb, &events.XRPCStreamEvent{Error: &events.ErrorFrame{Error: "FutureCursor", Message: "later"}}),
		"unknown":  rawFrame(tb, &events.EventHeader{Op: 1, MsgType: "#labels"}, &comatproto.SyncSubscribeRepos_Info{Name: "x"}),
		"garbage":  []byte("\xa2bop\x01at\x67#commit\xbf\xff"),
	}
}

// writeSeeds writes seeds in the go test fuzz v1 corpus format.
func writeSeeds(t *testing.T, target string, seeds map[string]string) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range seeds {
		body := "go test fuzz v1\n"
		if strings.HasPrefix(target, "FuzzSyntax") || strings.HasPrefix(target, "FuzzText") {
			body += "string(" + strconv.Quote(s) + ")\n"
		} else {
			body += "[]byte(" + strconv.Quote(s) + ")\n"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFuzzSeeds checks that the committed seed corpus is there and that its commit seed is a
// real, fully decodable commit; -update-seeds rewrites it.
func TestFuzzSeeds(t *testing.T) {
	if *updateSeeds {
		frames := map[string]string{}
		for name, f := range seedFrames(t) {
			frames[name] = string(f)
		}
		writeSeeds(t, "FuzzDecode", frames)
		writeSeeds(t, "FuzzPeekHeader", frames)
		pick := func(list []string, n int) map[string]string {
			out := map[string]string{}
			for i, s := range list {
				if i%n == 0 {
					out[fmt.Sprintf("case%02d", i)] = s
				}
			}
			return out
		}
		writeSeeds(t, "FuzzSyntax", pick(syntaxCases, 8))
		writeSeeds(t, "FuzzText", pick(textCases, 2))
		dir := filepath.Join("testdata", "fuzz", "FuzzRecord")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, s := range seedRecords(t) {
			body := fmt.Sprintf("go test fuzz v1\nuint8(%d)\n[]byte(%s)\n", s.coll, strconv.Quote(string(s.data)))
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzDecode", "commit"))
	if err != nil {
		t.Fatalf("seed corpus missing (go test ./decode -run TestFuzzSeeds -update-seeds): %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "[]byte(") {
		t.Fatalf("commit seed: bad corpus file")
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("commit seed: %v", err)
	}
	ev, err := NewDecoder(Options{}).Decode([]byte(s))
	if err != nil {
		t.Fatalf("commit seed: %v", err)
	}
	if ev.Kind != KindCommit || len(ev.Ops) != 6 || ev.Ops[0].Post == nil || ev.Ops[3].Profile == nil {
		t.Errorf("commit seed decodes to %+v", ev)
	}
	for _, target := range []string{"FuzzPeekHeader", "FuzzRecord", "FuzzSyntax", "FuzzText"} {
		if entries, err := os.ReadDir(filepath.Join("testdata", "fuzz", target)); err != nil || len(entries) == 0 {
			t.Errorf("no seeds for %s: %v", target, err)
		}
	}
}

func FuzzPeekHeader(f *testing.F) {
	for _, frame := range seedFrames(f) {
		f.Add(frame)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		h, err := PeekHeader(frame)
		if err != nil {
			return
		}
		if h.Kind == KindError && h.Op != opError || h.Kind != KindError && h.Kind != KindUnknown && h.Op != opMessage {
			t.Errorf("header %+v: kind does not match op", h)
		}
		if !h.Time.IsZero() && h.Time.Location().String() != "UTC" {
			t.Errorf("time %v not UTC", h.Time)
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, frame := range seedFrames(f) {
		f.Add(frame)
	}
	d := NewDecoder(Options{})
	filtered := NewDecoder(Options{Collections: []Collection{CollectionLike, CollectionProfile}})
	opsOnly := NewDecoder(Options{OpsOnly: true})
	f.Fuzz(func(t *testing.T, frame []byte) {
		ev, err := d.Decode(frame)
		checkOpsOnly(t, opsOnly, frame, ev, err)
		if err != nil {
			if ev != nil {
				t.Errorf("Decode returned an event with error %v", err)
			}
			return
		}
		checkEvent(t, ev)
		if h, err := PeekHeader(frame); err == nil {
			if h.Kind != ev.Kind {
				t.Errorf("PeekHeader kind %v, Decode kind %v", h.Kind, ev.Kind)
			}
			switch ev.Kind {
			case KindCommit, KindIdentity, KindAccount, KindSync:
				if h.Seq != ev.Seq {
					t.Errorf("PeekHeader seq %d, Decode seq %d", h.Seq, ev.Seq)
				}
			}
		}
		if ev2, err := filtered.Decode(frame); err != nil || len(ev2.Ops) != len(ev.Ops) {
			t.Errorf("filtered decoder: %v, %d ops, want %d", err, len(ev2.Ops), len(ev.Ops))
		}
	})
}

// checkOpsOnly checks that an OpsOnly decoder agrees with a full one (ev, err) on all it
// promises: the frame's outcome, the event's seq, time, kind and DID, and every op's action,
// collection and URI.
func checkOpsOnly(t *testing.T, d *Decoder, frame []byte, ev *Event, err error) {
	t.Helper()
	lean, lerr := d.Decode(frame)
	if (err == nil) != (lerr == nil) {
		t.Fatalf("OpsOnly error %v, full decoder error %v", lerr, err)
	}
	if err != nil {
		return
	}
	if lean.Kind != ev.Kind || lean.Seq != ev.Seq || !lean.Time.Equal(ev.Time) || lean.DID != ev.DID || len(lean.Ops) != len(ev.Ops) {
		t.Fatalf("OpsOnly event %v %d %v %q %d ops, full %v %d %v %q %d ops", lean.Kind, lean.Seq, lean.Time, lean.DID, len(lean.Ops), ev.Kind, ev.Seq, ev.Time, ev.DID, len(ev.Ops))
	}
	if ev.Kind == KindCommit && !hasReason(lean, ReasonBadDID) && checkDID(ev.DID) != nil {
		t.Errorf("OpsOnly has no bad_did for DID %q", ev.DID)
	}
	for i := range ev.Ops {
		a, b := &lean.Ops[i], &ev.Ops[i]
		if a.Action != b.Action || a.Collection != b.Collection || a.URI != b.URI {
			t.Errorf("op %d: OpsOnly %v %v %q, full %v %v %q", i, a.Action, a.Collection, a.URI, b.Action, b.Collection, b.URI)
		}
	}
}

func hasReason(ev *Event, r Reason) bool {
	for _, p := range ev.Problems {
		if p.Reason == r {
			return true
		}
	}
	return false
}

// checkEvent checks what must hold for any decoded event: bounded problems, and row text
// that PostgreSQL can store.
func checkEvent(t *testing.T, ev *Event) {
	t.Helper()
	for _, p := range ev.Problems {
		if len(p.Subject) > maxSubject || len(p.Detail) > maxDetail || p.Reason == "" {
			t.Errorf("problem %+v", p)
		}
	}
	storable := func(what, s string) {
		if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
			t.Errorf("%s %q: not storable", what, s)
		}
	}
	storableJSON := func(what string, b []byte) {
		if b == nil {
			return
		}
		if !utf8.Valid(b) {
			t.Errorf("%s %q is not UTF-8", what, b)
		}
		if jsonHoldsNUL(t, b) {
			t.Errorf("%s %s holds a NUL", what, b)
		}
	}
	storable("did", ev.DID)
	if ev.Handle != nil {
		storable("handle", *ev.Handle)
	}
	storable("status", ev.Status)
	for _, op := range ev.Ops {
		storable("op uri", op.URI)
		storable("op cid", op.CID)
		if op.Post != nil {
			p := op.Post
			for _, s := range []string{p.URI, p.CID, p.AuthorDID, p.Text, p.ParentURI, p.RootURI} {
				storable("post", s)
			}
			storableJSON("embed", p.Embed)
			storableJSON("facets", p.Facets)
			var tags []string
			if err := json.Unmarshal(p.Tags, &tags); err != nil {
				t.Errorf("tags %s: %v", p.Tags, err)
			}
			storableJSON("tags", p.Tags)
		}
		if l := op.Like; l != nil {
			for _, s := range []string{l.URI, l.UserDID, l.PostURI} {
				storable("like", s)
			}
		}
		if f := op.Follow; f != nil {
			for _, s := range []string{f.URI, f.ActorDID, f.SubjectDID} {
				storable("follow", s)
			}
		}
		if p := op.Profile; p != nil {
			storable("profile did", p.DID)
			for _, s := range []*string{p.DisplayName, p.Description, p.AvatarCID, p.BannerCID} {
				if s != nil {
					storable("profile", *s)
				}
			}
			storableJSON("pinned", p.PinnedPost)
			storableJSON("record", p.Record)
		}
		rows := 0
		for _, set := range []bool{op.Post != nil, op.Like != nil, op.Follow != nil, op.Profile != nil} {
			if set {
				rows++
			}
		}
		if rows > 1 || rows == 1 && (op.Action == ActionDelete || op.Collection == CollectionOther) {
			t.Errorf("op %s: wrong rows", dumpOp(op))
		}
	}
}

// recordFrame is a commit frame creating one record from raw bytes, without an MST: enough for
// the decoder, which never reads one.
func recordFrame(tb testing.TB, coll Collection, data []byte) []byte {
	tb.Helper()
	nsid := []string{"app.bsky.graph.listitem", nsidPost, nsidLike, nsidRepost, nsidFollow, nsidBlock, nsidProfile}[coll%NumCollections]
	rkey := "3l6oveex3ii2a"
	if coll%NumCollections == CollectionProfile {
		rkey = "self"
	}
	c := cidFor(tb, data)
	blk, err := blocks.NewBlockWithCid(data, c)
	if err != nil {
		tb.Fatal(err)
	}
	return commitFrame(tb, &comatproto.SyncSubscribeRepos_Commit{
		Blobs:  []lexutil.LexLink{},
		Blocks: carOf(tb, c, []blocks.Block{blk}),
		Commit: lexutil.LexLink(c),
		Ops:    []*comatproto.SyncSubscribeRepos_RepoOp{{Action: "create", Path: nsid + "/" + rkey, Cid: (*lexutil.LexLink)(&c)}},
		Repo:   testDID,
		Rev:    "3l6oveex3ii2a",
		Seq:    1,
		Time:   "2025-03-14T15:09:26.535Z",
	})
}

// seedRecords are record seeds of each collection.
func seedRecords(tb testing.TB) map[string]struct {
	coll Collection
	data []byte
} {
	type seed = struct {
		coll Collection
		data []byte
	}
	return map[string]seed{
		"post":     {CollectionPost, cborOf(tb, richPost(parentURI, rootURI))},
		"like":     {CollectionLike, cborOf(tb, likeRecord(parentURI))},
		"repost":   {CollectionRepost, cborOf(tb, repostRecord(parentURI))},
		"follow":   {CollectionFollow, cborOf(tb, followRecord(otherDID))},
		"block":    {CollectionBlock, cborOf(tb, blockRecord(otherDID))},
		"profile":  {CollectionProfile, cborOf(tb, profileRecord("Gopher"))},
		"listitem": {CollectionOther, cborOf(tb, followRecord(otherDID))},
	}
}

// FuzzRecord decodes arbitrary record bytes as a record of each collection.
func FuzzRecord(f *testing.F) {
	for _, s := range seedRecords(f) {
		f.Add(uint8(s.coll), s.data)
	}
	d := NewDecoder(Options{})
	f.Fuzz(func(t *testing.T, coll uint8, data []byte) {
		ev, err := d.Decode(recordFrame(t, Collection(coll), data))
		if err != nil {
			t.Fatalf("a commit frame around a record failed: %v", err)
		}
		checkEvent(t, ev)
		if len(ev.Ops) != 1 {
			t.Fatalf("%d ops", len(ev.Ops))
		}
	})
}

func FuzzSyntax(f *testing.F) {
	for _, s := range syntaxCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkSyntaxAgrees(t, s) })
}

func FuzzText(f *testing.F) {
	for _, s := range textCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkTextClean(t, s) })
}
