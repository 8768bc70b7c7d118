package loader

import (
	"slices"
	"strings"
	"testing"
)

func TestLimitsFits(t *testing.T) {
	l := newLimits(map[string]int{"t.c": 5, "t.d": 10})
	cases := []struct {
		table, column, s string
		want             bool
	}{
		{"t", "c", "abcde", true},
		{"t", "c", "abcdef", false},
		{"t", "c", "ééééé", true},   // 10 bytes, 5 characters
		{"t", "c", "éééééé", false}, // 6 characters
		{"t", "d", "abcdef", true},  // past the smallest limit, within its own
		{"t", "d", "abcdefghijk", false},
		{"t", "x", strings.Repeat("x", 100), true}, // no limit
		{"u", "c", strings.Repeat("x", 100), true},
	}
	for _, c := range cases {
		if got := l.fits(c.table, c.column, c.s); got != c.want {
			t.Errorf("fits(%s.%s, %q) = %v, want %v", c.table, c.column, c.s, got, c.want)
		}
	}
	if n, ok := l.limit("t", "d"); !ok || n != 10 {
		t.Errorf("limit(t.d) = %d, %v", n, ok)
	}
	if _, ok := l.limit("t", "x"); ok {
		t.Error("limit(t.x) reported a limit")
	}
	var none limits
	if !none.fits("t", "c", strings.Repeat("x", 1000)) {
		t.Error("the zero limits refused a string")
	}
	if none := newLimits(map[string]int{}); !none.fits("t", "c", strings.Repeat("x", 1000)) {
		t.Error("limits without columns refused a string")
	}
}

// TestColumnLimits loads identifiers longer than SCHEMA.md's varchar columns allow (skipped and
// counted as too_long) and a display name longer than its column (cut to it and counted as
// truncated, with profile_record keeping the whole record), beside values exactly at the limits,
// which are written as they are.
func TestColumnLimits(t *testing.T) {
	t.Parallel()
	longDID := "did:plc:" + strings.Repeat("x", 300) // 308 bytes: follows.following_did is varchar(255)
	edgeDID := "did:plc:" + strings.Repeat("y", 247) // 255 bytes
	name := strings.Repeat("é", 300)                 // 300 characters: users.display_name is varchar(255)
	edgeName := strings.Repeat("ü", 255)             // 255 characters, 510 bytes
	evs := []tEvent{
		commitEv(1, alice, op("create", nsFollow, "f1", longDID), op("create", nsFollow, "f2", edgeDID)),
		commitEv(2, alice, profileOp("create", name)),
		commitEv(3, bob, profileOp("create", edgeName)),
		commitEv(4, longDID, postOp("create", "p1", "from a DID too long for users.did")),
	}
	url := testDB(t)
	dir := t.TempDir()
	writeSpool(t, dir, evs)
	load(t, Config{DatabaseURL: url, Workers: 2}, dir)
	c := dbConn(t, url)
	checks := map[string][]string{
		"SELECT following_did FROM follows":                                        {edgeDID},
		"SELECT uri FROM posts":                                                    nil,
		"SELECT did FROM users WHERE did LIKE 'did:plc:x%'":                        nil,
		"SELECT length(display_name)::text FROM users WHERE did = '" + alice + "'": {"255"},
		"SELECT (display_name = '" + strings.Repeat("é", 255) + "')::text FROM users WHERE did = '" + alice + "'": {"true"},
		"SELECT (display_name = '" + edgeName + "')::text FROM users WHERE did = '" + bob + "'":                   {"true"},
		"SELECT (profile_record->>'displayName' = '" + name + "')::text FROM users WHERE did = '" + alice + "'":   {"true"},
		"SELECT skipped::text FROM backfill_segments":                                                             {`{"too_long": 2}`},
		"SELECT repaired::text FROM backfill_segments":                                                            {`{"truncated": 1}`},
	}
	for q, want := range checks {
		if got := query(t, c, q); !slices.Equal(got, want) {
			t.Errorf("%s\n got %q\nwant %q", q, got, want)
		}
	}
}
