package loader

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/backfill/backfill/decode"
)

// sanitize makes every value of ev storable by PostgreSQL: text without NUL bytes or invalid
// UTF-8 (repaired and counted as cleaned_text), JSON that parses and holds no \u0000 escape
// (which jsonb rejects). decode already does the text part; this is the loader's own guard, since
// one unstorable value would fail a whole segment's transaction on every retry.
func sanitize(ev *decode.Event) {
	cleaned := false
	str := func(s *string) {
		if c, ok := cleanString(*s); ok {
			*s, cleaned = c, true
		}
	}
	strp := func(s *string) {
		if s != nil {
			str(s)
		}
	}
	str(&ev.DID)
	strp(ev.Handle)
	str(&ev.Status)
	for i := range ev.Ops {
		op := &ev.Ops[i]
		str(&op.URI)
		switch {
		case op.Post != nil:
			r := op.Post
			for _, s := range []*string{&r.URI, &r.CID, &r.AuthorDID, &r.Text, &r.ParentURI, &r.RootURI} {
				str(s)
			}
			ok := true
			for _, b := range []*[]byte{&r.Embed, &r.Facets, &r.Tags} {
				if !cleanJSON(b) {
					ok = false
				}
			}
			if r.Tags == nil {
				r.Tags = []byte("[]")
			}
			if !ok {
				ev.Problems = append(ev.Problems, decode.Problem{Reason: decode.ReasonBadRecord, Subject: op.URI, Detail: "record JSON is not valid"})
				op.Post = nil
			}
		case op.Like != nil:
			for _, s := range []*string{&op.Like.URI, &op.Like.UserDID, &op.Like.PostURI} {
				str(s)
			}
		case op.Follow != nil:
			for _, s := range []*string{&op.Follow.URI, &op.Follow.ActorDID, &op.Follow.SubjectDID} {
				str(s)
			}
		case op.Profile != nil:
			r := op.Profile
			for _, s := range []*string{r.DisplayName, r.Description, r.AvatarCID, r.BannerCID} {
				strp(s)
			}
			if !cleanJSON(&r.PinnedPost) || !cleanJSON(&r.Record) {
				ev.Problems = append(ev.Problems, decode.Problem{Reason: decode.ReasonBadRecord, Subject: op.URI, Detail: "record JSON is not valid"})
				op.Profile = nil
			}
		}
	}
	if cleaned {
		ev.Problems = append(ev.Problems, decode.Problem{Reason: decode.ReasonCleanedText, Subject: ev.DID, Detail: "NUL or invalid UTF-8 removed by the loader"})
	}
}

// cleanString returns s without NUL bytes and invalid UTF-8, and whether it changed.
func cleanString(s string) (string, bool) {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s, false
	}
	s = strings.ToValidUTF8(s, "")
	return strings.ReplaceAll(s, "\x00", ""), true
}

var nulEscape = []byte(`\u0000`)

// cleanJSON removes \u0000 escapes from the JSON in *b and reports whether it is valid JSON
// (nil is valid: NULL).
func cleanJSON(b *[]byte) bool {
	if *b == nil {
		return true
	}
	if bytes.Contains(*b, nulEscape) {
		*b = dropNULEscapes(*b)
	}
	return json.Valid(*b)
}

// dropNULEscapes removes every \u0000 escape that is an escape (not an escaped backslash
// followed by "u0000").
func dropNULEscapes(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			out = append(out, b[i])
			continue
		}
		if b[i+1] == 'u' && i+6 <= len(b) && bytes.Equal(b[i:i+6], nulEscape) {
			i += 5
			continue
		}
		out = append(out, b[i], b[i+1])
		i++
	}
	return out
}
