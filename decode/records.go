package decode

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/bluesky-social/indigo/api/bsky"
	"github.com/bluesky-social/indigo/atproto/atdata"
)

// opText collects the text cleaning of one op, so that the op gets at most one
// ReasonCleanedText problem.
type opText struct{ cleaned bool }

// str cleans a string bound for a row.
func (t *opText) str(s string) string {
	s, c := cleanText(s)
	t.cleaned = t.cleaned || c
	return s
}

// ptr cleans an optional string bound for a row.
func (t *opText) ptr(s *string) *string {
	if s == nil {
		return nil
	}
	c := t.str(*s)
	return &c
}

// marshal returns v as JSON for a row, its strings cleaned (see marshalClean).
func (t *opText) marshal(v any) ([]byte, error) {
	b, c, err := marshalClean(v)
	t.cleaned = t.cleaned || c
	return b, err
}

// done adds the op's ReasonCleanedText problem, if any.
func (t *opText) done(ev *Event, op *Op) {
	if t.cleaned {
		addProblem(ev, ReasonCleanedText, op.URI, "NUL or invalid UTF-8 removed")
	}
}

// decodeRecord decodes an op's record block into its row. A record that does not decode gets a
// ReasonBadRecord problem and no row. The lean readers (lean.go) check the CBOR as they read
// it; a profile, which goes through indigo's types, is checked by checkMapItem first.
func (d *Decoder) decodeRecord(ev *Event, op *Op, data []byte) {
	var err error
	switch op.Collection {
	case CollectionPost:
		err = d.decodePost(ev, op, data)
	case CollectionLike, CollectionRepost:
		var rec subjectRecord
		if err = readSubjectRecord(data, op.Collection, &rec); err == nil {
			err = d.subjectRow(ev, op, &rec)
		}
	case CollectionFollow, CollectionBlock:
		var rec subjectRecord
		if err = readSubjectRecord(data, op.Collection, &rec); err == nil {
			err = d.graphRow(ev, op, &rec)
		}
	case CollectionProfile:
		if err = checkMapItem(data); err == nil {
			err = d.decodeProfile(ev, op, data)
		}
	}
	if err != nil {
		addProblem(ev, ReasonBadRecord, op.URI, err.Error())
	}
}

// checkType checks a record's $type against the collection it is stored in.
func checkType[T string | []byte](op *Op, typ T) error {
	if string(typ) != op.NSID {
		return fmt.Errorf("record $type %q in collection %s", truncate(string(typ), 64), op.NSID)
	}
	return nil
}

// createdAt parses a record's createdAt; when it does not parse, the event's time stands in,
// with a ReasonBadTime problem.
func createdAt[T string | []byte](ev *Event, op *Op, s T) time.Time {
	if t, ok := parseRecordTime(s); ok {
		return t
	}
	addProblem(ev, ReasonBadTime, op.URI, fmt.Sprintf("createdAt %q", truncate(string(s), 64)))
	return ev.Time
}

func (d *Decoder) decodePost(ev *Event, op *Op, data []byte) error {
	p := &d.post
	if err := d.readPost(data, p); err != nil {
		return err
	}
	if err := checkType(op, p.typ); err != nil {
		return err
	}
	var t opText
	row := &PostRow{URI: op.URI, CID: op.CID, AuthorDID: ev.DID}
	row.Text = t.str(string(p.text))
	if p.reply {
		row.ParentURI = replyURI(ev, op, p.hasParent, p.parent, "parent")
		row.RootURI = replyURI(ev, op, p.hasRoot, p.root, "root")
	}
	var generic map[string]any // the record decoded generically, when a union needs it
	if p.embed != nil {
		embed := p.embed
		b, err := d.fieldJSON(&t, embed, func() (any, error) {
			e := new(bsky.FeedPost_Embed)
			return e, d.unmarshal(embed, e)
		}, &generic, data, "embed")
		if err != nil {
			return fmt.Errorf("embed: %w", err)
		}
		if b == nil {
			dropField(ev, op, "embed")
		}
		row.Embed = b
	}
	if p.facets != nil {
		facets := p.facets
		b, err := d.fieldJSON(&t, facets, func() (any, error) { return d.typedFacets(facets) }, &generic, data, "facets")
		if err != nil {
			return fmt.Errorf("facets: %w", err)
		}
		if b == nil {
			dropField(ev, op, "facets")
		}
		row.Facets = b
	}
	row.Tags = postTags(&t, p.tags, p.facetTags)
	row.CreatedAt = createdAt(ev, op, p.createdAt)
	t.done(ev, op)
	op.Post = row
	return nil
}

// replyURI returns a reply reference's uri, or empty with a ReasonBadURI problem when the
// reference is missing or its uri is not an at:// URI. A valid at:// URI is ASCII, so it needs
// no cleaning.
func replyURI(ev *Event, op *Op, present bool, uri []byte, which string) string {
	if !present {
		addProblem(ev, ReasonBadURI, op.URI, "reply "+which+" missing")
		return ""
	}
	s := string(uri)
	if err := checkATURI(s); err != nil {
		addProblem(ev, ReasonBadURI, op.URI, "reply "+which+": "+err.Error())
		return ""
	}
	return s
}

// fieldJSON returns the JSON of a record field whose CBOR is raw, transcoded (see json.go) so
// that fields and union members indigo's types do not know are kept. Where the transcoder
// rejects it (data outside the atproto data model in a part that indigo's decoding of the
// field ignores), it falls back to the JSON of the field as typed returns it decoded by
// indigo, and then to the field of the record decoded generically. It fails only when typed
// does, that is when indigo rejects the record; a field that decodes but has no JSON by any of
// the three (a union member indigo does not know, holding a float) gives nil: the caller
// stores NULL and keeps the record (dropField).
func (d *Decoder) fieldJSON(t *opText, raw []byte, typed func() (any, error), generic *map[string]any, data []byte, field string) ([]byte, error) {
	if b, cleaned, err := d.jsonw.transcode(raw); err == nil {
		t.cleaned = t.cleaned || cleaned
		return b, nil
	}
	v, err := typed()
	if err != nil {
		return nil, err
	}
	if b, err := t.marshal(v); err == nil {
		return b, nil
	}
	// A union member indigo does not know: keep it as the record has it.
	if b, err := genericField(t, generic, data, field); err == nil {
		return b, nil
	}
	return nil, nil
}

// dropField adds the ReasonDroppedField problem of a field of op's record that has no JSON
// and is stored as NULL.
func dropField(ev *Event, op *Op, field string) {
	addProblem(ev, ReasonDroppedField, op.URI, field+": outside the atproto data model, stored as NULL")
}

// genericField returns the JSON of one field of the record, decoded generically (once, into
// *m) so that values indigo's types do not know are kept.
func genericField(t *opText, m *map[string]any, data []byte, field string) ([]byte, error) {
	if *m == nil {
		g, err := decodeGeneric(data)
		if err != nil {
			return nil, err
		}
		*m = g
	}
	return t.marshal((*m)[field])
}

// decodeGeneric decodes a record into atproto's generic data model (atdata). Like unmarshal,
// it turns a panic of the third-party decoder into an error.
func decodeGeneric(data []byte) (m map[string]any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decode: generic CBOR decoder panic: %v", p)
		}
	}()
	return atdata.UnmarshalCBOR(data)
}

// emptyTags is the tags value of a post without tags.
const emptyTags = "[]"

// postTags returns the post's tags and then its facets' #tag features, cleaned, without exact
// duplicates (the first kept), as a JSON array.
func postTags(t *opText, recordTags, facetTags [][]byte) []byte {
	n := len(recordTags) + len(facetTags)
	if n == 0 {
		return []byte(emptyTags)
	}
	tags := make([]string, 0, n)
	var seen map[string]bool // for many tags; a scan is quicker for a few
	add := func(b []byte) {
		s := t.str(string(b))
		if n > 16 {
			if seen == nil {
				seen = make(map[string]bool, n)
			}
			if seen[s] {
				return
			}
			seen[s] = true
		} else {
			for _, have := range tags {
				if have == s {
					return
				}
			}
		}
		tags = append(tags, s)
	}
	for _, s := range recordTags {
		add(s)
	}
	for _, s := range facetTags {
		add(s)
	}
	b, err := json.Marshal(tags)
	if err != nil { // cannot happen for valid strings
		return []byte(emptyTags)
	}
	return b
}

// subjectRow fills a like or repost row.
func (d *Decoder) subjectRow(ev *Event, op *Op, rec *subjectRecord) error {
	if err := checkType(op, rec.typ); err != nil {
		return err
	}
	if !rec.hasSubject {
		addProblem(ev, ReasonBadURI, op.URI, "no subject")
		return nil
	}
	subject := string(rec.subject)
	if err := checkATURI(subject); err != nil {
		addProblem(ev, ReasonBadURI, op.URI, "subject: "+err.Error())
		return nil
	}
	op.Like = &SubjectRow{
		URI:       op.URI,
		UserDID:   ev.DID,
		PostURI:   subject,
		CreatedAt: createdAt(ev, op, rec.createdAt),
	}
	return nil
}

// graphRow fills a follow or block row.
func (d *Decoder) graphRow(ev *Event, op *Op, rec *subjectRecord) error {
	if err := checkType(op, rec.typ); err != nil {
		return err
	}
	subject := string(rec.subject)
	if err := checkDID(subject); err != nil {
		addProblem(ev, ReasonBadDID, op.URI, "subject: "+err.Error())
		return nil
	}
	op.Follow = &GraphRow{
		URI:        op.URI,
		ActorDID:   ev.DID,
		SubjectDID: subject,
		CreatedAt:  createdAt(ev, op, rec.createdAt),
	}
	return nil
}

// pinnedPost is the JSON shape of users.pinned_post.
type pinnedPost struct {
	URI string `json:"uri"`
	CID string `json:"cid"`
}

func (d *Decoder) decodeProfile(ev *Event, op *Op, data []byte) error {
	p := &d.profile
	if err := d.unmarshal(data, p); err != nil {
		return err
	}
	if err := checkType(op, p.LexiconTypeID); err != nil {
		return err
	}
	// The whole record, fields indigo's struct does not know included. Where it has none (data
	// outside the atproto data model that indigo's struct ignores), profile_record is NULL and
	// the profile's columns are set: dropping the record would clear them on an update.
	record, cleaned, err := d.jsonw.recordJSON(data)
	if err != nil {
		record, cleaned = nil, false
		dropField(ev, op, "profile_record")
	}
	t := opText{cleaned: cleaned}
	row := &ProfileRow{
		DID:         ev.DID,
		DisplayName: t.ptr(p.DisplayName),
		Description: t.ptr(p.Description),
		Record:      record,
	}
	if p.Avatar != nil && p.Avatar.Ref.Defined() {
		s := p.Avatar.Ref.String()
		row.AvatarCID = &s
	}
	if p.Banner != nil && p.Banner.Ref.Defined() {
		s := p.Banner.Ref.String()
		row.BannerCID = &s
	}
	if p.PinnedPost != nil {
		b, err := t.marshal(&pinnedPost{URI: p.PinnedPost.Uri, CID: p.PinnedPost.Cid})
		if err != nil {
			return err
		}
		row.PinnedPost = b
	}
	t.done(ev, op)
	op.Profile = row
	return nil
}
