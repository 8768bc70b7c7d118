package decode

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bluesky-social/indigo/api/bsky"
	"github.com/bluesky-social/indigo/atproto/atdata"
)

// refClean is the cleaning rule, as the contract states it.
func refClean(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}

// textCases are strings that exercise the cleaning rule's corners.
var textCases = []string{
	"",
	"plain",
	"héllo wörld 🌍",
	"\x00",
	"a\x00b",
	"\xff",
	"a\xff\xfeb",
	"\xff\x00\xfe",          // one run of invalid bytes across a NUL
	"\xe2\x00\x82\xac",      // removing the NUL makes a valid "€"
	"\xe2\x82",              // truncated sequence
	"\uFFFD\xff",            // a real U+FFFD then an invalid byte: two replacement characters
	`\u0000 and \ufffd`,     // literal backslash text: not a NUL
	"\\\x00u0000",           // a backslash, then a NUL, then text
	"\xed\xa0\x80",          // a UTF-16 surrogate in UTF-8: invalid
	"tab\tquote\"<>&\u2028", // escapes of every kind
}

func checkTextClean(t *testing.T, s string) {
	t.Helper()
	want := refClean(s)
	got, changed := cleanText(s)
	if got != want || changed != (want != s) {
		t.Errorf("cleanText(%q) = %q, %v; want %q, %v", s, got, changed, want, want != s)
	}

	// The same string inside JSON: a struct field, a generic map key and value, an array.
	type doc struct {
		S    string   `json:"s"`
		List []string `json:"list"`
		Ptr  *string  `json:"ptr"`
	}
	s2 := s // the walk cleans in place, behind the pointer too
	dirty := &doc{S: s, List: []string{"x", s}, Ptr: &s2}
	wantJSON, err := json.Marshal(&doc{S: want, List: []string{"x", want}, Ptr: &want})
	if err != nil {
		t.Fatal(err)
	}
	gotJSON, changed, err := marshalClean(dirty)
	if err != nil || !bytes.Equal(gotJSON, wantJSON) || changed != (want != s) {
		t.Errorf("marshalClean(struct with %q) = %s, %v, %v; want %s, %v", s, gotJSON, changed, err, wantJSON, want != s)
	}

	generic := map[string]any{s + "k": []any{s, map[string]any{"in": s}}, "blob": atdata.Blob{Ref: atdata.CIDLink(testBlobCID), MimeType: s, Size: 1}}
	wantJSON, err = json.Marshal(map[string]any{want + "k": []any{want, map[string]any{"in": want}}, "blob": atdata.Blob{Ref: atdata.CIDLink(testBlobCID), MimeType: want, Size: 1}})
	if err != nil {
		t.Fatal(err)
	}
	gotJSON, changed, err = marshalClean(generic)
	if err != nil || !bytes.Equal(gotJSON, wantJSON) || changed != (want != s) {
		t.Errorf("marshalClean(generic with %q) = %s, %v, %v; want %s, %v", s, gotJSON, changed, err, wantJSON, want != s)
	}

	for _, n := range []int{0, 1, 2, 3, 5, 8} {
		cut := truncate(s, n)
		if len(cut) > n || !strings.HasPrefix(s, cut) || utf8.ValidString(s) && !utf8.ValidString(cut) {
			t.Errorf("truncate(%q, %d) = %q", s, n, cut)
		}
	}
}

func TestCleanText(t *testing.T) {
	for _, s := range textCases {
		t.Run(s, func(t *testing.T) { checkTextClean(t, s) })
	}
}

func TestCleanTypedEmbed(t *testing.T) {
	// indigo's union types: strings deep inside an embed, behind pointers and custom
	// MarshalJSON methods.
	s := "\xe2\x00\x82\xac \x00\xff"
	embed := &bsky.FeedPost_Embed{EmbedRecordWithMedia: &bsky.EmbedRecordWithMedia{
		Media: &bsky.EmbedRecordWithMedia_Media{EmbedImages: &bsky.EmbedImages{
			Images: []*bsky.EmbedImages_Image{{Alt: s, Image: testBlob()}},
		}},
		Record: &bsky.EmbedRecord{Record: likeRecord(s).Subject},
	}}
	got, changed, err := marshalClean(embed)
	if err != nil || !changed {
		t.Fatalf("marshalClean = %s, %v, %v", got, changed, err)
	}
	if n := strings.Count(string(got), "\"€ \uFFFD\""); n != 2 {
		t.Errorf("JSON %s: want the cleaned string twice", got)
	}
}

func TestCleanTextAllocations(t *testing.T) {
	s := strings.Repeat("clean text, nothing to do 🌍 ", 10)
	if n := testing.AllocsPerRun(100, func() { cleanText(s) }); n != 0 {
		t.Errorf("cleanText of clean text allocates %v times", n)
	}
}
