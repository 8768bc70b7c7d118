package decode

import (
	"testing"
	"time"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
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
