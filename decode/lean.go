package decode

import (
	"github.com/bluesky-social/indigo/api/bsky"
	cbg "github.com/whyrusleeping/cbor-gen"
)

// This file reads posts, likes, reposts, follows and blocks in place of indigo's cbor-gen
// types (profiles still go through them), keeping the fields decodeRecord uses as slices of the
// record and checking the rest as the generated code does (see commit.go for its rules), so
// that the same records decode and the same ones fail. A post's embed is checked by embed.go;
// its labels and deprecated entities, rare, still go through indigo's types.

// cbgStruct reads a struct map the way cbor-gen's generated code does. A key of at most max
// bytes goes to field, which reads its value and reports whether the key names a field; the
// values of other keys are skipped by scanForLinks.
func cbgStruct(r *cborReader, max int, field func(key []byte) (bool, error)) error {
	n, err := structLen(r)
	if err != nil {
		return err
	}
	for range n {
		key, err := fieldName(r, max)
		if err != nil {
			return err
		}
		if key != nil {
			ok, err := field(key)
			if err != nil {
				return err
			}
			if ok {
				continue
			}
		}
		if err := scanForLinks(r); err != nil {
			return err
		}
	}
	return nil
}

// strongRef reads a com.atproto.repo.strongRef and returns its uri.
func strongRef(r *cborReader) (uri []byte, err error) {
	err = cbgStruct(r, len("$type"), func(key []byte) (bool, error) {
		var err error
		switch string(key) {
		case "uri":
			uri, err = cbgString(r)
		case "cid", "$type":
			_, err = cbgString(r)
		default:
			return false, nil
		}
		return true, err
	})
	return uri, err
}

// optStrongRef reads an optional strong ref field: a null leaves *uri and *set as they were.
func optStrongRef(r *cborReader, uri *[]byte, set *bool) error {
	if r.peekNull() {
		return nil
	}
	u, err := strongRef(r)
	if err != nil {
		return err
	}
	*uri, *set = u, true
	return nil
}

// subjectRecord is what decodeRecord uses of a like, repost, follow or block.
type subjectRecord struct {
	typ, createdAt []byte
	subject        []byte // a strong ref's uri (likes, reposts) or a DID (follows, blocks)
	hasSubject     bool   // likes and reposts: the subject was present and not null
}

// readSubjectRecord reads a like or repost (ref true: app.bsky.feed.like and .repost, whose
// subject and via are strong refs) or a follow or block (ref false: subject a string; via, a
// strong ref, is a field of follows only).
func readSubjectRecord(data []byte, coll Collection, rec *subjectRecord) error {
	*rec = subjectRecord{}
	r := cborReader{b: data}
	ref := coll == CollectionLike || coll == CollectionRepost
	err := cbgStruct(&r, len("createdAt"), func(key []byte) (bool, error) {
		var err error
		switch string(key) {
		case "$type":
			rec.typ, err = cbgString(&r)
		case "createdAt":
			rec.createdAt, err = cbgString(&r)
		case "subject":
			if ref {
				err = optStrongRef(&r, &rec.subject, &rec.hasSubject)
			} else {
				rec.subject, err = cbgString(&r)
			}
		case "via":
			if coll == CollectionBlock {
				return false, nil
			}
			var via []byte
			var set bool
			err = optStrongRef(&r, &via, &set)
		default:
			return false, nil
		}
		return true, err
	})
	if err == nil && r.off != len(data) {
		err = errTrailing
	}
	return err
}

// leanPost is what decodePost uses of a post. Its byte slices point into the record.
type leanPost struct {
	typ, text, createdAt []byte
	tags                 [][]byte // the record's tags
	reply                bool     // the record has a (non-null) reply
	parent, root         []byte   // the reply's parent and root uris
	hasParent, hasRoot   bool
	embed                []byte   // the CBOR of the embed, nil when absent or null
	facets               []byte   // the CBOR of the facets array, nil when absent or empty
	facetTags            [][]byte // the tags of the facets' #tag features, in order
}

// readPost reads a post record into p, reusing its slices. d decodes labels and entities.
func (d *Decoder) readPost(data []byte, p *leanPost) error {
	tags, facetTags := p.tags[:0], p.facetTags[:0]
	*p = leanPost{}
	r := cborReader{b: data}
	err := cbgStruct(&r, len("createdAt"), func(key []byte) (bool, error) {
		var err error
		switch string(key) {
		case "$type":
			p.typ, err = cbgString(&r)
		case "text":
			p.text, err = cbgString(&r)
		case "createdAt":
			p.createdAt, err = cbgString(&r)
		case "tags":
			var n int
			if n, err = arrayLen(&r); err != nil || n == 0 {
				break // an empty array leaves earlier tags, as in cbor-gen
			}
			tags = tags[:0]
			for range n {
				s, err := cbgString(&r)
				if err != nil {
					return true, err
				}
				tags = append(tags, s)
			}
			p.tags = tags
		case "langs":
			var n int
			if n, err = arrayLen(&r); err != nil {
				break
			}
			for range n {
				if _, err := cbgString(&r); err != nil {
					return true, err
				}
			}
		case "reply":
			if !r.peekNull() {
				p.reply, p.parent, p.root, p.hasParent, p.hasRoot = true, nil, nil, false, false
				err = readReplyRef(&r, p)
			}
		case "facets":
			start := r.off
			var n int
			if n, err = arrayLen(&r); err != nil || n == 0 {
				break // an empty array leaves earlier facets
			}
			facetTags = facetTags[:0]
			for range n {
				if r.peekNull() {
					continue
				}
				if facetTags, err = readFacet(&r, facetTags); err != nil {
					return true, err
				}
			}
			p.facets, p.facetTags = r.b[start:r.off], facetTags
		case "embed":
			if !r.peekNull() {
				start := r.off
				if err = checkCbgType(&r, embedType); err == nil {
					p.embed = r.b[start:r.off]
				}
			}
		case "labels":
			if !r.peekNull() {
				var l bsky.FeedPost_Labels
				_, err = d.typedItem(&r, &l)
			}
		case "entities":
			var n int
			if n, err = arrayLen(&r); err != nil {
				break
			}
			for range n {
				if r.peekNull() {
					continue
				}
				var e bsky.FeedPost_Entity
				if _, err := d.typedItem(&r, &e); err != nil {
					return true, err
				}
			}
		default:
			return false, nil
		}
		return true, err
	})
	if p.tags == nil {
		p.tags = tags[:0]
	}
	if p.facetTags == nil {
		p.facetTags = facetTags[:0]
	}
	if err == nil && r.off != len(data) {
		err = errTrailing
	}
	return err
}

// typedItem decodes the item at the reader's offset with v's generated code and returns the
// item's CBOR.
func (d *Decoder) typedItem(r *cborReader, v cbg.CBORUnmarshaler) ([]byte, error) {
	start := r.off
	if err := r.skip(); err != nil {
		return nil, err
	}
	span := r.b[start:r.off]
	return span, d.unmarshal(span, v)
}

// typedFacets decodes a post's facets array (leanPost.facets) with indigo's types.
func (d *Decoder) typedFacets(b []byte) ([]*bsky.RichtextFacet, error) {
	r := cborReader{b: b}
	n, err := arrayLen(&r)
	if err != nil {
		return nil, err
	}
	out := make([]*bsky.RichtextFacet, n)
	for i := range out {
		if r.peekNull() {
			continue
		}
		out[i] = new(bsky.RichtextFacet)
		if _, err := d.typedItem(&r, out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readReplyRef reads a post's reply: parent and root strong refs, each of which a null leaves
// as it was.
func readReplyRef(r *cborReader, p *leanPost) error {
	return cbgStruct(r, len("parent"), func(key []byte) (bool, error) {
		switch string(key) {
		case "parent":
			return true, optStrongRef(r, &p.parent, &p.hasParent)
		case "root":
			return true, optStrongRef(r, &p.root, &p.hasRoot)
		}
		return false, nil
	})
}

// readFacet reads one app.bsky.richtext.facet and appends the tags of its #tag features to
// tags. Like cbor-gen, it keeps the last non-empty features array.
func readFacet(r *cborReader, tags [][]byte) ([][]byte, error) {
	base := len(tags)
	err := cbgStruct(r, len("features"), func(key []byte) (bool, error) {
		switch string(key) {
		case "features":
			n, err := arrayLen(r)
			if err != nil || n == 0 {
				return true, err
			}
			tags = tags[:base]
			for range n {
				if r.peekNull() {
					continue
				}
				var tag []byte
				var isTag bool
				if tag, isTag, err = readFeature(r); err != nil {
					return true, err
				}
				if isTag {
					tags = append(tags, tag)
				}
			}
		case "index":
			if r.peekNull() {
				return true, nil
			}
			return true, cbgStruct(r, len("byteStart"), func(key []byte) (bool, error) {
				switch string(key) {
				case "byteStart", "byteEnd":
					_, err := cbgInt(r)
					return true, err
				}
				return false, nil
			})
		default:
			return false, nil
		}
		return true, nil
	})
	return tags, err
}

// Facet feature types.
const (
	featureTag     = "app.bsky.richtext.facet#tag"
	featureLink    = "app.bsky.richtext.facet#link"
	featureMention = "app.bsky.richtext.facet#mention"
)

// readFeature reads one facet feature as indigo's union does: a {$type} pass over the map
// (lexutil.CborTypeExtractReader), then, for a known type, the member's struct over the same
// bytes; an unknown type is no error. It returns a #tag feature's tag.
func readFeature(r *cborReader) (tag []byte, isTag bool, err error) {
	start := r.off
	typ, err := unionType(r)
	if err != nil {
		return nil, false, err
	}
	var field string
	switch string(typ) {
	case featureTag:
		field = "tag"
	case featureLink:
		field = "uri"
	case featureMention:
		field = "did"
	default:
		return nil, false, nil
	}
	end := r.off
	r.off = start
	var value []byte
	err = cbgStruct(r, len("$type"), func(key []byte) (bool, error) {
		var err error
		switch string(key) {
		case "$type":
			_, err = cbgString(r)
		case field:
			value, err = cbgString(r)
		default:
			return false, nil
		}
		return true, err
	})
	r.off = end // the same bytes again: where the first pass ended
	if err != nil || field != "tag" {
		return nil, false, err
	}
	return value, true, nil
}
