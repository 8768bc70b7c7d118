package loader

import (
	"fmt"
	"testing"
	"time"
)

// TestPendingLog: a unit's change and a whole set round-trip through backfill_pending's log
// records, applied in order.
func TestPendingLog(t *testing.T) {
	row := func(i int, n int) pairOp {
		op := pairOp{uri: fmt.Sprintf("at://did:plc:a/app.bsky.feed.like/%d", n), key: pairKey{"did:plc:a", fmt.Sprintf("at://did:plc:b/app.bsky.feed.post/%d", n)},
			created: time.UnixMicro(int64(1700000000000000 + n)).UTC(), indexed: time.UnixMicro(int64(1700000001000000 + n)).UTC()}
		tab := TableLikes + Table(i)
		op.uh, op.ph = uriHash(tab, op.uri), pairHash(tab, op.key)
		return op
	}
	var want pendingSet
	ch1 := &pendingChange{}
	for n := range 5 {
		ch1.added[n%numPairTables] = append(ch1.added[n%numPairTables], row(n%numPairTables, n))
	}
	want.apply(ch1)
	ch2 := &pendingChange{}
	r0 := want.uris[0][row(0, 0).uri]
	ch2.materialize[0] = []*pairOp{r0}
	ch2.ended[1] = []string{row(1, 1).uri}
	ch2.added[2] = []pairOp{row(2, 7)}
	snapshot := want.encodeAfter(ch2) // before want changes
	want.apply(ch2)

	var got pendingSet
	for _, b := range [][]byte{ch1.encode(nil), ch2.encode(nil)} {
		if err := got.decodeLog(b); err != nil {
			t.Fatal(err)
		}
	}
	var compacted pendingSet
	if err := compacted.decodeLog(snapshot); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*pendingSet{"log": &got, "snapshot": &compacted} {
		if s.n != want.n || s.n != 4 {
			t.Errorf("%s: %d rows, want %d (4)", name, s.n, want.n)
		}
		checkHashes(t, s)
		for i := range want.uris {
			for uri, w := range want.uris[i] {
				g := s.uris[i][uri]
				if g == nil || *g != *w || s.pairs[i][w.key] != g {
					t.Errorf("%s: table %d uri %s: got %+v, want %+v", name, i, uri, g, w)
				}
			}
		}
	}
}

// FuzzPendingLog: any bytes read back from backfill_pending give an error or a set, never a
// panic, and a decoded set encodes back to records that decode to the same set.
func FuzzPendingLog(f *testing.F) {
	ch := &pendingChange{}
	ch.added[1] = []pairOp{{uri: "at://x/y/z", key: pairKey{"a", "b"}, created: time.UnixMicro(5).UTC(), indexed: time.UnixMicro(6).UTC()}}
	ch.ended[3] = []string{"at://x/y/w"}
	f.Add(ch.encode(nil))
	f.Add([]byte{1})
	f.Add([]byte{1, 2, 0, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s pendingSet
		if err := s.decodeLog(b); err != nil {
			return
		}
		var again pendingSet
		if err := again.decodeLog(s.encodeAfter(&pendingChange{})); err != nil {
			t.Fatalf("re-encoded set does not decode: %v", err)
		}
		if again.n != s.n {
			t.Fatalf("re-encoded set has %d rows, want %d", again.n, s.n)
		}
		checkHashes(t, &s)
		checkHashes(t, &again)
	})
}

// checkHashes fails t unless s.hashes counts exactly the uri and pair hashes of s's rows.
func checkHashes(t *testing.T, s *pendingSet) {
	t.Helper()
	want := map[keyHash]int32{}
	for i := range s.uris {
		for _, r := range s.uris[i] {
			want[r.uh]++
			want[r.ph]++
		}
	}
	if len(want) != len(s.hashes) {
		t.Fatalf("hashes of %d keys, want %d", len(s.hashes), len(want))
	}
	for h, n := range want {
		if s.hashes[h] != n {
			t.Fatalf("hash %x counted %d times, want %d", h, s.hashes[h], n)
		}
	}
}
