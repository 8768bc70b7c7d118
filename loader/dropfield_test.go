package loader

import (
	"io"
	"slices"
	"testing"

	"github.com/backfill/backfill/decode"
	"github.com/bluesky-social/indigo/atproto/atdata"
)

// rawRecord is a record given as its CBOR bytes.
type rawRecord []byte

func (r rawRecord) MarshalCBOR(w io.Writer) error {
	_, err := w.Write(r)
	return err
}

// TestDroppedField loads records with a field outside the atproto data model that indigo's
// types decode (a float in an extra profile field, in an embed of a type indigo does not know):
// the rows are written with that JSON column NULL and counted as dropped_field, and a profile
// update carrying one sets the profile's columns instead of clearing them.
func TestDroppedField(t *testing.T) {
	t.Parallel()
	raw := func(m map[string]any) rawRecord {
		b, err := atdata.MarshalCBOR(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	update := tOp{action: "update", coll: nsProfile, rkey: "self", rec: raw(map[string]any{
		"$type": nsProfile, "displayName": "Alice Two", "description": "updated", "score": 0.5,
	})}
	withEmbed := tOp{action: "create", coll: nsPost, rkey: "p1", rec: raw(map[string]any{
		"$type": nsPost, "text": "kept", "createdAt": testCreated,
		"embed": map[string]any{"$type": "app.bsky.embed.hologram", "depth": 1.5},
	})}
	evs := []tEvent{
		commitEv(1, alice, profileOp("create", "Alice One")),
		commitEv(2, alice, update),
		commitEv(3, bob, withEmbed),
	}
	url := testDB(t)
	dir := t.TempDir()
	writeSpool(t, dir, evs)
	sum := load(t, Config{DatabaseURL: url, Workers: 2}, dir)
	if got := sum.Repaired[decode.ReasonDroppedField]; got != 2 {
		t.Errorf("summary: dropped_field %d, want 2 (%v)", got, sum.Repaired)
	}
	c := dbConn(t, url)
	checks := map[string][]string{
		"SELECT display_name || '/' || description || '/' || (profile_record IS NULL)::text FROM users WHERE did = '" + alice + "'": {"Alice Two/updated/true"},
		"SELECT text || '/' || (embed IS NULL)::text || '/' || author_did FROM posts":                                               {"kept/true/" + bob},
		"SELECT repaired::text FROM backfill_segments":                                                                              {`{"dropped_field": 2}`},
		"SELECT skipped::text FROM backfill_segments":                                                                               {`{}`},
	}
	for q, want := range checks {
		if got := query(t, c, q); !slices.Equal(got, want) {
			t.Errorf("%s\n got %q\nwant %q", q, got, want)
		}
	}
}
