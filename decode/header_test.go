package decode

import (
	"testing"
	"time"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/atproto/atdata"
	"github.com/bluesky-social/indigo/events"
)

func TestPeekHeader(t *testing.T) {
	str := func(s string) *string { return &s }
	r := newTestRepo(t, testDID, 100)
	commit := r.commit(create(nsidPost+"/3l6oveex3ii2a", richPost(parentURI, rootURI)))
	cases := []struct {
		name  string
		frame []byte
		want  Header
	}{
		{
			name:  "commit",
			frame: commitFrame(t, commit),
			want:  Header{Op: 1, Type: "#commit", Kind: KindCommit, Seq: commit.Seq, HasSeq: true, Time: testTime, DID: testDID},
		},
		{
			name:  "identity",
			frame: frameOf(t, &events.XRPCStreamEvent{RepoIdentity: &comatproto.SyncSubscribeRepos_Identity{Did: testDID, Handle: str("a.test"), Seq: 5, Time: "2025-03-14T15:09:26.535Z"}}),
			want:  Header{Op: 1, Type: "#identity", Kind: KindIdentity, Seq: 5, HasSeq: true, Time: testTime, DID: testDID},
		},
		{
			name:  "account",
			frame: frameOf(t, &events.XRPCStreamEvent{RepoAccount: &comatproto.SyncSubscribeRepos_Account{Did: testDID, Seq: 6, Time: "2025-03-14T15:09:26.535Z"}}),
			want:  Header{Op: 1, Type: "#account", Kind: KindAccount, Seq: 6, HasSeq: true, Time: testTime, DID: testDID},
		},
		{
			name:  "sync",
			frame: frameOf(t, &events.XRPCStreamEvent{RepoSync: &comatproto.SyncSubscribeRepos_Sync{Did: testDID, Blocks: []byte{1}, Seq: 1 << 40, Time: "2025-03-14T15:09:26.535Z"}}),
			want:  Header{Op: 1, Type: "#sync", Kind: KindSync, Seq: 1 << 40, HasSeq: true, Time: testTime, DID: testDID},
		},
		{
			name:  "info",
			frame: frameOf(t, &events.XRPCStreamEvent{RepoInfo: &comatproto.SyncSubscribeRepos_Info{Name: "OutdatedCursor", Message: str("too old")}}),
			want:  Header{Op: 1, Type: "#info", Kind: KindInfo, InfoName: "OutdatedCursor", Message: "too old"},
		},
		{
			name:  "info without message",
			frame: frameOf(t, &events.XRPCStreamEvent{RepoInfo: &comatproto.SyncSubscribeRepos_Info{Name: "OutdatedCursor"}}),
			want:  Header{Op: 1, Type: "#info", Kind: KindInfo, InfoName: "OutdatedCursor"},
		},
		{
			name:  "error",
			frame: frameOf(t, &events.XRPCStreamEvent{Error: &events.ErrorFrame{Error: "ConsumerTooSlow", Message: "slow down"}}),
			want:  Header{Op: -1, Kind: KindError, ErrorName: "ConsumerTooSlow", Message: "slow down"},
		},
		{
			name:  "unknown type",
			frame: rawFrame(t, &events.EventHeader{Op: 1, MsgType: "#labels"}, &comatproto.SyncSubscribeRepos_Sync{Did: testDID, Seq: 9, Time: "2025-03-14T15:09:26.535Z"}),
			want:  Header{Op: 1, Type: "#labels", Kind: KindUnknown, Seq: 9, HasSeq: true, Time: testTime, DID: testDID},
		},
		{
			name:  "unparseable time",
			frame: frameOf(t, &events.XRPCStreamEvent{RepoSync: &comatproto.SyncSubscribeRepos_Sync{Did: testDID, Seq: 10, Time: "now"}}),
			want:  Header{Op: 1, Type: "#sync", Kind: KindSync, Seq: 10, HasSeq: true, DID: testDID},
		},
		{
			name:  "time with an offset",
			frame: frameOf(t, &events.XRPCStreamEvent{RepoSync: &comatproto.SyncSubscribeRepos_Sync{Did: testDID, Seq: 11, Time: "2025-03-14T10:39:26.535-04:30"}}),
			want:  Header{Op: 1, Type: "#sync", Kind: KindSync, Seq: 11, HasSeq: true, Time: testTime, DID: testDID},
		},
		{
			// Bodies without a schema here: fields of unexpected types are skipped as absent.
			name:  "unknown type with fields of other types",
			frame: bodyFrame(t, 1, "#labels", map[string]any{"seq": int64(13), "time": int64(1710000000), "did": map[string]any{"x": int64(1)}, "labels": []any{"a"}}),
			want:  Header{Op: 1, Type: "#labels", Kind: KindUnknown, Seq: 13, HasSeq: true},
		},
		{
			name:  "unknown type with a seq that is not an integer",
			frame: bodyFrame(t, 1, "#labels", map[string]any{"seq": "14", "time": "2025-03-14T15:09:26.535Z"}),
			want:  Header{Op: 1, Type: "#labels", Kind: KindUnknown, Time: testTime},
		},
		{
			name:  "error with a message that is not text",
			frame: bodyFrame(t, -1, "", map[string]any{"error": "FutureCursor", "message": int64(42)}),
			want:  Header{Op: -1, Kind: KindError, ErrorName: "FutureCursor"},
		},
		{
			name:  "lenient time",
			frame: frameOf(t, &events.XRPCStreamEvent{RepoSync: &comatproto.SyncSubscribeRepos_Sync{Did: testDID, Seq: 12, Time: "2025-03-14T15:09:26.535+0000"}}),
			want:  Header{Op: 1, Type: "#sync", Kind: KindSync, Seq: 12, HasSeq: true, Time: testTime, DID: testDID},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PeekHeader(tc.frame)
			if err != nil {
				t.Fatalf("PeekHeader: %v", err)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if got.Time.Location() != time.UTC {
				t.Errorf("time %v not in UTC", got.Time)
			}
			// Decode agrees on what both report.
			ev, err := NewDecoder(Options{}).Decode(tc.frame)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if ev.Kind != got.Kind || ev.Seq != got.Seq || !ev.Time.Equal(got.Time) || ev.DID != got.DID {
				t.Errorf("Decode: kind %v seq %d time %v did %q; PeekHeader %+v", ev.Kind, ev.Seq, ev.Time, ev.DID, got)
			}
		})
	}
}

// bodyFrame returns a frame of header {op, t} (t left out when empty) and the body m.
func bodyFrame(t *testing.T, op int64, typ string, m map[string]any) []byte {
	t.Helper()
	hdr := map[string]any{"op": op}
	if typ != "" {
		hdr["t"] = typ
	}
	var out []byte
	for _, v := range []map[string]any{hdr, m} {
		b, err := atdata.MarshalCBOR(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// TestPeekHeaderKnownFieldTypes checks that the known types' fields keep their types: a frame
// whose field indigo's decoder would refuse fails here too.
func TestPeekHeaderKnownFieldTypes(t *testing.T) {
	for _, body := range []map[string]any{
		{"did": testDID, "seq": int64(1), "time": int64(1710000000), "rev": "x", "blocks": []byte{1}},
		{"did": testDID, "seq": "1", "time": "2025-03-14T15:09:26.535Z", "rev": "x", "blocks": []byte{1}},
		{"did": int64(7), "seq": int64(1), "time": "2025-03-14T15:09:26.535Z", "rev": "x", "blocks": []byte{1}},
	} {
		frame := bodyFrame(t, 1, "#sync", body)
		if h, err := PeekHeader(frame); err == nil {
			t.Errorf("PeekHeader(#sync %v) = %+v, want an error", body, h)
		}
		if ev, err := NewDecoder(Options{}).Decode(frame); err == nil {
			t.Errorf("Decode(#sync %v) = %+v, want an error", body, ev)
		}
	}
}

func TestPeekHeaderAllocations(t *testing.T) {
	r := newTestRepo(t, testDID, 100)
	frame := commitFrame(t, r.commit(create(nsidPost+"/3l6oveex3ii2a", richPost(parentURI, rootURI))))
	// The DID string is the one allocation.
	if n := testing.AllocsPerRun(100, func() {
		if _, err := PeekHeader(frame); err != nil {
			t.Fatal(err)
		}
	}); n > 1 {
		t.Errorf("PeekHeader allocates %v times per commit frame, want 1", n)
	}
}
