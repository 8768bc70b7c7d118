package decode

import (
	"strings"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// syntaxCases are inputs on the edges of the hand-written syntax checks.
var syntaxCases = []string{
	"", ".", "..", "...", "self", "3l6oveex3ii2l", "a b", "a/b", "~_.:-", strings.Repeat("k", 512), strings.Repeat("k", 513),
	"app.bsky.feed.post", "app.bsky.feed", "app.bsky", "a.b.c", "a.b.c1", "a.b.1c", "1a.b.c", "a-.b.c", "a.-b.c", "a.b-.c",
	"a.b.c-d", "A.B.C", "app..post", "app.bsky.feed.post.", ".app.bsky", "com.example.fooBar", "com.exa-mple.x9",
	strings.Repeat("a", 63) + ".b.c", strings.Repeat("a", 64) + ".b.c", "a.b." + strings.Repeat("c", 63), "a.b." + strings.Repeat("c", 64),
	"a." + strings.Repeat("b.", 160) + "c", "ü.b.c",
	"at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/3l6oveex3ii2l",
	"at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/",
	"at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/a/b",
	"at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/..",
	"at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app..post/abc",
	"at://did:plc:ewvi7nxzyoun6zhxrhs64oiz",
	"at://did:plc:ewvi7nxzyoun6zhxrhs64oi!/app.bsky.feed.post/abc",
	"at://did:plc:ewvi7nxzyoun6zhxrhs64oizz/app.bsky.feed.post/abc",
	"at://alice.test/app.bsky.feed.post/abc",
	"at://did:web:example.com/app.bsky.feed.post/abc",
	"2025-03-14T15:09:26.535Z", "2025-03-14T15:09:26Z", "2025-03-14T15:09:26.123456789Z", "2025-03-14T15:09:26.1234567891Z",
	"2025-03-14T15:09:26.535+01:00", "2025-03-14T15:09:26.535-00:00", "2025-03-14T15:09:26.535+0000", "2025-03-14T15:09:26.535",
	"2025-02-29T00:00:00Z", "2024-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2025-04-31T00:00:00Z",
	"2025-13-01T00:00:00Z", "2025-00-01T00:00:00Z", "2025-01-00T00:00:00Z", "2025-01-01T24:00:00Z", "2025-01-01T23:60:00Z",
	"2025-01-01T23:59:60Z", "2025-01-01T00:00:00+24:00", "2025-01-01T00:00:00+23:59", "2025-01-01T00:00:00+01:60",
	"0000-01-01T00:00:00Z", "0000-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
	"2025-03-14t15:09:26Z", "2025-03-14T15:09:26z", "2025-03-14 15:09:26Z", "2025-03-14T15:09:26.Z", "2025-03-14T15:09:26,5Z",
	"+2025-03-14T15:09:26Z", "2025-3-14T15:09:26Z", "２025-03-14T15:09:26Z",
}

// checkSyntaxAgrees checks the hand-written checks against indigo's on one input.
func checkSyntaxAgrees(t *testing.T, s string) {
	t.Helper()
	_, err := syntax.ParseRecordKey(s)
	if got := validRkey(s); got != (err == nil) {
		t.Errorf("validRkey(%q) = %v, indigo: %v", s, got, err)
	}
	_, err = syntax.ParseNSID(s)
	if got := validNSIDFast(s); got != (err == nil) {
		t.Errorf("validNSIDFast(%q) = %v, indigo: %v", s, got, err)
	}
	for _, u := range []string{s, "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/" + s, "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.like/" + s} {
		_, err = syntax.ParseATURI(u)
		if got := checkATURI(u); (got == nil) != (err == nil) {
			t.Errorf("checkATURI(%q) = %v, indigo: %v", u, got, err)
		}
	}
	if got, ok := parseTimeFast(s); ok {
		std, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || !std.Equal(got) {
			t.Errorf("parseTimeFast(%q) = %v; time.Parse = %v, %v", s, got, std, err)
		}
		dt, err := syntax.ParseDatetimeLenient(s)
		if err != nil || !dt.Time().Equal(got) {
			t.Errorf("parseTimeFast(%q) = %v; ParseDatetimeLenient = %v, %v", s, got, dt.Time(), err)
		}
		if got.Location() != time.UTC {
			t.Errorf("parseTimeFast(%q) = %v: not UTC", s, got)
		}
		if b, ok := parseTimeFast([]byte(s)); !ok || !b.Equal(got) {
			t.Errorf("parseTimeFast([]byte(%q)) = %v, %v; want %v", s, b, ok, got)
		}
	}
	// The slow paths are indigo's own.
	if got, ok := parseRecordTime(s); ok {
		dt, err := syntax.ParseDatetimeLenient(s)
		if err != nil || !dt.Time().Equal(got) {
			t.Errorf("parseRecordTime(%q) = %v; ParseDatetimeLenient = %v, %v", s, got, dt, err)
		}
	} else if _, err := syntax.ParseDatetimeLenient(s); err == nil {
		t.Errorf("parseRecordTime(%q) failed, ParseDatetimeLenient parses it", s)
	}
}

func TestSyntaxAgreesWithIndigo(t *testing.T) {
	for _, s := range syntaxCases {
		t.Run(s, func(t *testing.T) { checkSyntaxAgrees(t, s) })
	}
}

func TestParseTimeFastCovers(t *testing.T) {
	// The fast path takes what relays and clients write; a miss would only cost speed, so
	// this pins that the common forms do not fall through.
	for _, s := range []string{"2025-03-14T15:09:26.535Z", "2025-03-14T15:09:26Z", "2025-03-14T15:09:26.535123+00:00", "2025-03-14T15:09:26.535-07:00"} {
		if _, ok := parseTimeFast(s); !ok {
			t.Errorf("parseTimeFast(%q) fell through", s)
		}
	}
	if n := testing.AllocsPerRun(100, func() { parseTimeFast([]byte("2025-03-14T15:09:26.535Z")) }); n != 0 {
		t.Errorf("parseTimeFast allocates %v times", n)
	}
}
