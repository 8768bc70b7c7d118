package decode

import (
	"github.com/ipfs/go-cid"
)

// This file checks a post's embed as indigo's generated types decode it (bsky.FeedPost_Embed
// and the types under it), without building them: the same embeds are accepted and rejected.
// The types are described by tables that follow their cbor-gen code field by field; a union
// reads the item's $type first (lexutil.CborTypeExtractReader), then the member's fields over
// the same bytes, and a member it does not know is no error; a blob (lexutil.LexBlob) is
// either {$type: "blob", ref, mimeType, size >= 0} or a legacy {cid, mimeType} whose cid
// go-cid decodes. One difference: a legacy cid longer than maxCIDTextLength is rejected
// without being decoded, as go-cid takes time quadratic in its length (base58) and a real one
// has 59 bytes.

// cbgKind is how cbor-gen's code reads a field.
type cbgKind uint8

const (
	cbgStringField cbgKind = iota // string
	cbgOptString                  // *string: null or a string
	cbgInt64Field                 // int64
	cbgPointer                    // *T, T a struct or a union: null or T
	cbgArray                      // []*T: an array of at most 8192 elements, each null or T
	cbgBlob                       // *lexutil.LexBlob: null or a blob
)

// cbgField is one field of a generated struct.
type cbgField struct {
	name string
	kind cbgKind
	typ  *cbgType // cbgPointer and cbgArray: the type pointed to
}

// cbgType is a generated struct (fields) or union (members, by $type).
type cbgType struct {
	fields  []cbgField
	max     int // the longest field name: longer keys are no field
	members map[string]*cbgType
}

// structType describes a struct.
func structType(fields ...cbgField) *cbgType {
	t := &cbgType{fields: fields}
	for _, f := range fields {
		t.max = max(t.max, len(f.name))
	}
	return t
}

// The types of app.bsky.feed.post#embed, as the indigo version in go.mod declares them.
var (
	aspectRatioType = structType(cbgField{"height", cbgInt64Field, nil}, cbgField{"width", cbgInt64Field, nil})
	strongRefType   = structType(cbgField{"$type", cbgStringField, nil}, cbgField{"cid", cbgStringField, nil}, cbgField{"uri", cbgStringField, nil})
	imagesType      = structType(
		cbgField{"$type", cbgStringField, nil},
		cbgField{"images", cbgArray, structType(
			cbgField{"alt", cbgStringField, nil},
			cbgField{"aspectRatio", cbgPointer, aspectRatioType},
			cbgField{"image", cbgBlob, nil},
		)},
	)
	videoType = structType(
		cbgField{"$type", cbgStringField, nil},
		cbgField{"alt", cbgOptString, nil},
		cbgField{"aspectRatio", cbgPointer, aspectRatioType},
		cbgField{"captions", cbgArray, structType(cbgField{"file", cbgBlob, nil}, cbgField{"lang", cbgStringField, nil})},
		cbgField{"presentation", cbgOptString, nil},
		cbgField{"video", cbgBlob, nil},
	)
	galleryType = structType(
		cbgField{"$type", cbgStringField, nil},
		cbgField{"items", cbgArray, &cbgType{members: map[string]*cbgType{
			"app.bsky.embed.gallery#image": structType(
				cbgField{"$type", cbgStringField, nil},
				cbgField{"alt", cbgStringField, nil},
				cbgField{"aspectRatio", cbgPointer, aspectRatioType},
				cbgField{"image", cbgBlob, nil},
			),
		}}},
	)
	externalType = structType(
		cbgField{"$type", cbgStringField, nil},
		cbgField{"external", cbgPointer, structType(
			cbgField{"associatedRefs", cbgArray, strongRefType},
			cbgField{"description", cbgStringField, nil},
			cbgField{"thumb", cbgBlob, nil},
			cbgField{"title", cbgStringField, nil},
			cbgField{"uri", cbgStringField, nil},
		)},
	)
	recordType = structType(cbgField{"$type", cbgStringField, nil}, cbgField{"record", cbgPointer, strongRefType})
	embedType  = &cbgType{members: map[string]*cbgType{
		"app.bsky.embed.images":   imagesType,
		"app.bsky.embed.video":    videoType,
		"app.bsky.embed.gallery":  galleryType,
		"app.bsky.embed.external": externalType,
		"app.bsky.embed.record":   recordType,
		"app.bsky.embed.recordWithMedia": structType(
			cbgField{"$type", cbgStringField, nil},
			cbgField{"media", cbgPointer, &cbgType{members: map[string]*cbgType{
				"app.bsky.embed.images":   imagesType,
				"app.bsky.embed.video":    videoType,
				"app.bsky.embed.gallery":  galleryType,
				"app.bsky.embed.external": externalType,
			}}},
			cbgField{"record", cbgPointer, recordType},
		),
	}}
)

// checkCbgType reads the item at the reader's offset as t.
func checkCbgType(r *cborReader, t *cbgType) error {
	if t.members != nil {
		return checkUnion(r, t)
	}
	return cbgStruct(r, t.max, func(key []byte) (bool, error) {
		for i := range t.fields {
			if f := &t.fields[i]; f.name == string(key) {
				return true, checkCbgField(r, f)
			}
		}
		return false, nil
	})
}

// checkCbgField reads the value of one field.
func checkCbgField(r *cborReader, f *cbgField) error {
	var err error
	switch f.kind {
	case cbgStringField:
		_, err = cbgString(r)
	case cbgOptString:
		if !r.peekNull() {
			_, err = cbgString(r)
		}
	case cbgInt64Field:
		_, err = cbgInt(r)
	case cbgPointer:
		if !r.peekNull() {
			err = checkCbgType(r, f.typ)
		}
	case cbgArray:
		var n int
		if n, err = arrayLen(r); err != nil {
			return err
		}
		for range n {
			if r.peekNull() {
				continue
			}
			if err := checkCbgType(r, f.typ); err != nil {
				return err
			}
		}
	case cbgBlob:
		if !r.peekNull() {
			err = checkBlob(r)
		}
	}
	return err
}

// unionType reads a map's $type as lexutil.CborChecker does.
func unionType(r *cborReader) ([]byte, error) {
	var typ []byte
	err := cbgStruct(r, len("$type"), func(key []byte) (bool, error) {
		if string(key) != "$type" {
			return false, nil
		}
		var err error
		typ, err = cbgString(r)
		return true, err
	})
	return typ, err
}

// checkUnion reads a union: its $type, then, for a known member, the member over the same bytes.
func checkUnion(r *cborReader, t *cbgType) error {
	start := r.off
	typ, err := unionType(r)
	if err != nil {
		return err
	}
	m := t.members[string(typ)]
	if m == nil {
		return nil
	}
	end := r.off
	r.off = start
	if err := checkCbgType(r, m); err != nil {
		return err
	}
	r.off = end
	return nil
}

// checkBlob reads a lexutil.LexBlob.
func checkBlob(r *cborReader) error {
	start := r.off
	typ, err := unionType(r)
	if err != nil {
		return err
	}
	end := r.off
	r.off = start
	var size int64
	var legacyCID []byte
	if string(typ) == "blob" {
		err = cbgStruct(r, len("mimeType"), func(key []byte) (bool, error) {
			var err error
			switch string(key) {
			case "$type", "mimeType":
				_, err = cbgString(r)
			case "ref":
				_, err = cbgCID(r)
			case "size":
				size, err = cbgInt(r)
			default:
				return false, nil
			}
			return true, err
		})
		if err == nil && size < 0 {
			err = errCBGType
		}
	} else {
		err = cbgStruct(r, len("mimeType"), func(key []byte) (bool, error) {
			var err error
			switch string(key) {
			case "cid":
				legacyCID, err = cbgString(r)
			case "mimeType":
				_, err = cbgString(r)
			default:
				return false, nil
			}
			return true, err
		})
		if err == nil {
			if len(legacyCID) > maxCIDTextLength {
				return errCBGCID // see below
			}
			if _, err := cid.Decode(string(legacyCID)); err != nil {
				return errCBGCID
			}
		}
	}
	r.off = end
	return err
}
