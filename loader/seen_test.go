package loader

import (
	"fmt"
	"testing"
)

// TestSeenKeys checks the filter of written keys: every key added is found (a miss would only
// cost a failed blind COPY, but would make the filter useless), tables and kinds of key are
// kept apart, and false positives stay rare.
func TestSeenKeys(t *testing.T) {
	var s seenKeys
	if s.mayHave(TableLikes, "at://did:plc:a/app.bsky.feed.like/1", pairKey{"did:plc:a", "x"}) {
		t.Fatal("an empty filter has a key")
	}
	const n = 100_000
	uri := func(i int) string { return fmt.Sprintf("at://did:plc:u%d/app.bsky.feed.like/%d", i%977, i) }
	pair := func(i int) pairKey {
		return pairKey{fmt.Sprintf("did:plc:u%d", i%977), fmt.Sprintf("at://did:plc:p/app.bsky.feed.post/%d", i)}
	}
	for i := range n {
		s.add(TableLikes, uri(i), pair(i))
		s.add(TablePosts, fmt.Sprintf("at://did:plc:p/app.bsky.feed.post/%d", i), pairKey{})
	}
	for i := range n {
		if !s.mayHave(TableLikes, uri(i), pairKey{"did:plc:none", "none"}) {
			t.Fatalf("uri %d added, not found", i)
		}
		if !s.mayHave(TableLikes, "at://did:plc:none/app.bsky.feed.like/x", pair(i)) {
			t.Fatalf("pair %d added, not found", i)
		}
	}
	fp := 0
	for i := n; i < 2*n; i++ {
		if s.mayHave(TableLikes, uri(i), pair(i)) {
			fp++
		}
		// The same strings in another table, or a uri as a pair: not added.
		if s.mayHave(TableReposts, uri(i-n), pair(i-n)) {
			fp++
		}
	}
	if fp > 2*n/100 {
		t.Errorf("%d false positives in %d lookups", fp, 2*n)
	}
	t.Logf("%d false positives in %d lookups", fp, 2*n)
}
