package loader

import (
	"fmt"
	"slices"
	"testing"
)

// TestSeenKeys checks the filter of written keys: every key added is found (a miss would only
// cost a failed blind COPY, but would make the filter useless), tables and kinds of key are
// kept apart, false positives stay rare, and a full filter starts over.
func TestSeenKeys(t *testing.T) {
	var s seenKeys
	if s.has(uriHash(TableLikes, "at://did:plc:a/app.bsky.feed.like/1")) {
		t.Fatal("an empty filter has a key")
	}
	const n = 100_000
	uri := func(i int) string { return fmt.Sprintf("at://did:plc:u%d/app.bsky.feed.like/%d", i%977, i) }
	pair := func(i int) pairKey {
		return pairKey{fmt.Sprintf("did:plc:u%d", i%977), fmt.Sprintf("at://did:plc:p/app.bsky.feed.post/%d", i)}
	}
	for i := range n {
		s.add(uriHash(TableLikes, uri(i)))
		s.add(pairHash(TableLikes, pair(i)))
		s.add(uriHash(TablePosts, fmt.Sprintf("at://did:plc:p/app.bsky.feed.post/%d", i)))
	}
	for i := range n {
		if !s.has(uriHash(TableLikes, uri(i))) {
			t.Fatalf("uri %d added, not found", i)
		}
		if !s.has(pairHash(TableLikes, pair(i))) {
			t.Fatalf("pair %d added, not found", i)
		}
	}
	fp := 0
	for i := n; i < 2*n; i++ {
		if s.has(uriHash(TableLikes, uri(i))) || s.has(pairHash(TableLikes, pair(i))) {
			fp++
		}
		// The same strings in another table, or a pair's strings swapped: not added.
		if s.has(uriHash(TableReposts, uri(i-n))) || s.has(pairHash(TableReposts, pair(i-n))) {
			fp++
		}
		if p := pair(i - n); s.has(pairHash(TableLikes, pairKey{p.b, p.a})) {
			fp++
		}
	}
	if fp > 3*n/100 {
		t.Errorf("%d false positives in %d lookups", fp, 2*n)
	}
	t.Logf("%d false positives in %d lookups", fp, 3*n)

	// Full: the filter starts over, and keeps working.
	s.n = seenCap
	s.add(uriHash(TablePosts, "at://did:plc:p/app.bsky.feed.post/new"))
	if s.n != 1 || !s.has(uriHash(TablePosts, "at://did:plc:p/app.bsky.feed.post/new")) || s.has(uriHash(TableLikes, uri(0))) {
		t.Errorf("the filter did not start over when full: %d keys", s.n)
	}
}

// TestTargetKept checks the in-memory sequential application of a phase's creates: in pos
// order a create is kept unless a kept create before it or a row a probe found holds its uri or
// its pair; a found uri blocks only that create, a found pair every create with the pair.
func TestTargetKept(t *testing.T) {
	type c struct{ uri, pair string }
	cases := []struct {
		name    string
		creates []c
		found   map[int]exist
		want    []int
	}{
		{"distinct", []c{{"u1", "p"}, {"u2", "q"}}, nil, []int{0, 1}},
		{"same pair: the first wins", []c{{"u1", "p"}, {"u2", "p"}, {"u3", "q"}}, nil, []int{0, 2}},
		{"same uri: the first wins", []c{{"u1", "p"}, {"u1", "q"}}, nil, []int{0}},
		{"a chain", []c{{"u1", "p"}, {"u2", "p"}, {"u2", "q"}}, nil, []int{0, 2}},
		{"found uri frees the pair", []c{{"u1", "p"}, {"u2", "p"}}, map[int]exist{0: existKey}, []int{1}},
		{"found pair blocks every create with it", []c{{"u1", "p"}, {"u2", "p"}, {"u3", "q"}}, map[int]exist{1: existPair}, []int{2}},
		{"found uri of a later create", []c{{"u1", "p"}, {"u1", "q"}}, map[int]exist{1: existKey}, nil},
		{"distinct, a found uri and a found pair", []c{{"u1", "p"}, {"u2", "q"}, {"u3", "r"}}, map[int]exist{0: existKey, 2: existPair}, []int{1}},
	}
	for _, tc := range cases {
		tg := &target{n: len(tc.creates), pairs: true, found: tc.found,
			key: func(i int) (string, pairKey) { return tc.creates[i].uri, pairKey{"a", tc.creates[i].pair} }}
		got := tg.kept()
		if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Errorf("%s: kept %v, want %v", tc.name, got, tc.want)
		}
		// Creates pairwise distinct on uri and pair (an unordered phase) take the short way,
		// with the same result.
		uris, pairs := map[string]bool{}, map[string]bool{}
		for _, cr := range tc.creates {
			uris[cr.uri], pairs[cr.pair] = true, true
		}
		if len(uris) == len(tc.creates) && len(pairs) == len(tc.creates) {
			tg.distinct = true
			if short := tg.kept(); !slices.Equal(short, got) {
				t.Errorf("%s: distinct creates kept %v, the general way %v", tc.name, short, got)
			}
		}
	}
}
