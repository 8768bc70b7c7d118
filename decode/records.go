package decode

import (
	"encoding/json"
	"fmt"
	"time"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
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
// ReasonBadRecord problem and no row.
func (d *Decoder) decodeRecord(ev *Event, op *Op, data []byte) {
	if err := checkMapItem(data); err != nil {
		addProblem(ev, ReasonBadRecord, op.URI, err.Error())
		return
	}
	var err error
	switch op.Collection {
	case CollectionPost:
		err = d.decodePost(ev, op, data)
	case CollectionLike:
		if err = d.unmarshal(data, &d.like); err == nil {
			err = d.subjectRow(ev, op, d.like.LexiconTypeID, d.like.Subject, d.like.CreatedAt)
		}
	case CollectionRepost:
		if err = d.unmarshal(data, &d.repost); err == nil {
			err = d.subjectRow(ev, op, d.repost.LexiconTypeID, d.repost.Subject, d.repost.CreatedAt)
		}
	case CollectionFollow:
		if err = d.unmarshal(data, &d.follow); err == nil {
			err = d.graphRow(ev, op, d.follow.LexiconTypeID, d.follow.Subject, d.follow.CreatedAt)
		}
	case CollectionBlock:
		if err = d.unmarshal(data, &d.block); err == nil {
			err = d.graphRow(ev, op, d.block.LexiconTypeID, d.block.Subject, d.block.CreatedAt)
		}
	case CollectionProfile:
		err = d.decodeProfile(ev, op, data)
	}
	if err != nil {
		addProblem(ev, ReasonBadRecord, op.URI, err.Error())
	}
}

// checkType checks a record's $type against the collection it is stored in.
func checkType(op *Op, typ string) error {
	if typ != op.NSID {
		return fmt.Errorf("record $type %q in collection %s", truncate(typ, 64), op.NSID)
	}
	return nil
}

// createdAt parses a record's createdAt; when it does not parse, the event's time stands in,
// with a ReasonBadTime problem.
func createdAt(ev *Event, op *Op, s string) time.Time {
	if t, ok := parseRecordTime(s); ok {
		return t
	}
	addProblem(ev, ReasonBadTime, op.URI, fmt.Sprintf("createdAt %q", truncate(s, 64)))
	return ev.Time
}

func (d *Decoder) decodePost(ev *Event, op *Op, data []byte) error {
	p := &d.post
	if err := d.unmarshal(data, p); err != nil {
		return err
	}
	if err := checkType(op, p.LexiconTypeID); err != nil {
		return err
	}
	var t opText
	row := &PostRow{URI: op.URI, CID: op.CID, AuthorDID: ev.DID}
	row.Text = t.str(p.Text)
	if p.Reply != nil {
		row.ParentURI = replyURI(ev, op, p.Reply.Parent, "parent")
		row.RootURI = replyURI(ev, op, p.Reply.Root, "root")
	}
	var generic map[string]any // the record decoded generically, when a union needs it
	if p.Embed != nil {
		b, err := t.marshal(p.Embed)
		if err != nil {
			// A union member indigo does not know: keep it as the record has it.
			b, err = genericField(&t, &generic, data, "embed")
		}
		if err != nil {
			return fmt.Errorf("embed: %w", err)
		}
		row.Embed = b
	}
	if p.Facets != nil {
		b, err := t.marshal(p.Facets)
		if err != nil {
			b, err = genericField(&t, &generic, data, "facets")
		}
		if err != nil {
			return fmt.Errorf("facets: %w", err)
		}
		row.Facets = b
	}
	row.Tags = postTags(&t, p)
	row.CreatedAt = createdAt(ev, op, p.CreatedAt)
	t.done(ev, op)
	op.Post = row
	return nil
}

// replyURI returns a reply reference's uri, or empty with a ReasonBadURI problem when it is
// not an at:// URI. A valid at:// URI is ASCII, so it needs no cleaning.
func replyURI(ev *Event, op *Op, ref *comatproto.RepoStrongRef, which string) string {
	if ref == nil {
		addProblem(ev, ReasonBadURI, op.URI, "reply "+which+" missing")
		return ""
	}
	if err := checkATURI(ref.Uri); err != nil {
		addProblem(ev, ReasonBadURI, op.URI, "reply "+which+": "+err.Error())
		return ""
	}
	return ref.Uri
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
func postTags(t *opText, p *bsky.FeedPost) []byte {
	n := len(p.Tags)
	for _, f := range p.Facets {
		if f != nil {
			n += len(f.Features)
		}
	}
	if n == 0 {
		return []byte(emptyTags)
	}
	tags := make([]string, 0, n)
	var seen map[string]bool // for many tags; a scan is quicker for a few
	add := func(s string) {
		s = t.str(s)
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
	for _, s := range p.Tags {
		add(s)
	}
	for _, f := range p.Facets {
		if f == nil {
			continue
		}
		for _, feat := range f.Features {
			if feat != nil && feat.RichtextFacet_Tag != nil {
				add(feat.RichtextFacet_Tag.Tag)
			}
		}
	}
	if len(tags) == 0 {
		return []byte(emptyTags)
	}
	b, err := json.Marshal(tags)
	if err != nil { // cannot happen for valid strings
		return []byte(emptyTags)
	}
	return b
}

// subjectRow fills a like or repost row.
func (d *Decoder) subjectRow(ev *Event, op *Op, typ string, subject *comatproto.RepoStrongRef, created string) error {
	if err := checkType(op, typ); err != nil {
		return err
	}
	if subject == nil {
		addProblem(ev, ReasonBadURI, op.URI, "no subject")
		return nil
	}
	if err := checkATURI(subject.Uri); err != nil {
		addProblem(ev, ReasonBadURI, op.URI, "subject: "+err.Error())
		return nil
	}
	op.Like = &SubjectRow{
		URI:       op.URI,
		UserDID:   ev.DID,
		PostURI:   subject.Uri,
		CreatedAt: createdAt(ev, op, created),
	}
	return nil
}

// graphRow fills a follow or block row.
func (d *Decoder) graphRow(ev *Event, op *Op, typ, subject, created string) error {
	if err := checkType(op, typ); err != nil {
		return err
	}
	if err := checkDID(subject); err != nil {
		addProblem(ev, ReasonBadDID, op.URI, "subject: "+err.Error())
		return nil
	}
	op.Follow = &GraphRow{
		URI:        op.URI,
		ActorDID:   ev.DID,
		SubjectDID: subject,
		CreatedAt:  createdAt(ev, op, created),
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
	// The whole record, fields indigo's struct does not know included.
	generic, err := decodeGeneric(data)
	if err != nil {
		return err
	}
	var t opText
	record, err := t.marshal(generic)
	if err != nil {
		return err
	}
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
