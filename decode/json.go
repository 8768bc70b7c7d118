package decode

import (
	"encoding/base64"
	"errors"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/bluesky-social/indigo/atproto/atdata"
	"github.com/ipfs/go-cid"
)

// This file transcodes DAG-CBOR straight into the JSON of the atproto data model, the JSON that
// atdata.UnmarshalCBOR followed by json.Marshal (and marshalClean's cleaning) gives, without
// building Go values: maps become objects, CID links {"$link": cid}, byte strings
// {"$bytes": base64}, integral floats integers, and every string, keys included, is cleaned
// as cleanText cleans. It follows atdata's rules where they change the output or reject data:
// {"$link": s} and {"$bytes": s} maps are parsed and written again in canonical form, a blob
// ({"$type": "blob", ...}) must have its four fields and is written in the legacy form when its
// size is negative, a legacy blob ({cid, mimeType}) has its cid parsed, and containers, keys
// and strings have atdata's length limits. Keys are written in json.Marshal's order and
// strings escaped as it escapes them, so that the JSON is the same byte for byte; a repeated
// key is an error, as in atdata. Differences, all on input that is not atproto data: keys
// that only cleaning makes equal are all written (marshalClean keeps one of them, whichever
// its map iteration meets last), items nested deeper than maxJSONDepth are rejected, and so
// are CID strings (of $link and legacy blobs) longer than maxCIDTextLength, which go-cid would
// decode in time quadratic in their length (base58). The record size limit and the check that
// the top level is an object are recordJSON's.

// Limits of the transcoder. maxJSONDepth bounds the recursion; the others are atdata's.
const (
	maxJSONDepth     = 128
	maxContainerLen  = atdata.MAX_CBOR_CONTAINER_LEN
	maxKeyLen        = atdata.MAX_OBJECT_KEY_LEN
	maxRecordString  = atdata.MAX_RECORD_STRING_LEN
	maxRecordCBOR    = atdata.MAX_CBOR_RECORD_SIZE
	jsonLinkPrefix   = `{"$link":"`
	jsonLinkSuffix   = `"}`
	cborTagLink      = 42
	cborSimpleFalse  = 20
	cborSimpleTrue   = 21
	cborSimpleNull   = 22
	cborSimpleUndef  = 23
	cborFloat16      = 25
	cborFloat32      = 26
	cborFloat64      = 27
	maxCIDTextLength = 512 // bytes of a CID string; a sha2-256 CID has 59 in base32
)

// Errors of the transcoder.
var (
	errJSONDepth       = errors.New("decode: data nested too deeply")
	errJSONTooLong     = errors.New("decode: container, key or string over the data model's limits")
	errJSONKey         = errors.New("decode: map key is not a text string")
	errJSONTag         = errors.New("decode: CBOR tag other than a CID link")
	errJSONSimple      = errors.New("decode: CBOR simple value outside the data model")
	errJSONFloat       = errors.New("decode: number is not an integer")
	errJSONLink        = errors.New("decode: bad CID link")
	errJSONBytesObj    = errors.New("decode: bad $bytes object")
	errJSONType        = errors.New("decode: $type is not a non-empty string")
	errJSONBlob        = errors.New("decode: bad blob")
	errJSONNotObject   = errors.New("decode: record is not an object")
	errJSONRecord      = errors.New("decode: record over the data model's size limit")
	errJSONRepeatedKey = errors.New("decode: map key repeated")
)

// jsonKind is what a transcoded item turned out to be, as far as the special maps care.
type jsonKind uint8

const (
	jsonOther jsonKind = iota
	jsonInt
	jsonText
	jsonBytes
	jsonLink // a tag 42 CID or a {"$link": ...} map
	jsonObject
)

// jsonItem is what value reports of the item it wrote, for the map that holds it.
type jsonItem struct {
	kind   jsonKind
	n      int64  // jsonInt: the value
	inText []byte // jsonText: the raw (uncleaned) text; jsonBytes: the raw bytes
	out0   int    // the item's JSON is buf[out0:out1]
	out1   int
}

// jsonWriter transcodes DAG-CBOR items to JSON into buf. Its buffers are reused from one call
// to the next.
type jsonWriter struct {
	r       cborReader
	buf     []byte
	cleaned bool        // some string was cleaned
	ents    []jsonEntry // the entries of the objects being written, innermost last
	tmp     []byte      // scratch for reordering entries
}

// jsonEntry is one key and value written into jsonWriter.buf, at buf[start:end].
type jsonEntry struct {
	key        []byte // the cleaned key
	raw        []byte // the key as the CBOR has it
	start, end int
}

// transcode returns the JSON of the one DAG-CBOR item that is all of b, and whether cleaning
// changed a string. The result is a fresh slice.
func (w *jsonWriter) transcode(b []byte) ([]byte, bool, error) {
	w.r = cborReader{b: b}
	w.buf = w.buf[:0]
	w.cleaned = false
	if _, err := w.value(0); err != nil {
		return nil, false, err
	}
	if w.r.off != len(b) {
		return nil, false, errTrailing
	}
	return append([]byte(nil), w.buf...), w.cleaned, nil
}

// recordJSON returns the JSON of a whole record as atdata.UnmarshalCBOR and json.Marshal give
// it: the record must be within atdata's size limit and an object (not a link, bytes or blob).
func (w *jsonWriter) recordJSON(b []byte) ([]byte, bool, error) {
	if len(b) > maxRecordCBOR {
		return nil, false, errJSONRecord
	}
	w.r = cborReader{b: b}
	w.buf = w.buf[:0]
	w.cleaned = false
	it, err := w.value(0)
	if err != nil {
		return nil, false, err
	}
	if w.r.off != len(b) {
		return nil, false, errTrailing
	}
	if it.kind != jsonObject {
		return nil, false, errJSONNotObject
	}
	return append([]byte(nil), w.buf...), w.cleaned, nil
}

// value transcodes the item at the reader's offset.
func (w *jsonWriter) value(depth int) (jsonItem, error) {
	it := jsonItem{out0: len(w.buf)}
	start := w.r.off
	maj, arg, err := w.r.head()
	if err != nil {
		return it, err
	}
	switch maj {
	case majUint:
		it.kind, it.n = jsonInt, int64(arg) // atdata (refmt) wraps above MaxInt64 too
		w.buf = strconv.AppendInt(w.buf, it.n, 10)
	case majNeg:
		it.kind, it.n = jsonInt, -1-int64(arg)
		w.buf = strconv.AppendInt(w.buf, it.n, 10)
	case majBytes:
		s, err := w.r.bytes(arg)
		if err != nil {
			return it, err
		}
		it.kind, it.inText = jsonBytes, s
		w.appendBytes(s)
	case majText:
		s, err := w.r.bytes(arg)
		if err != nil {
			return it, err
		}
		if len(s) > maxRecordString {
			return it, errJSONTooLong
		}
		it.kind, it.inText = jsonText, s
		w.appendString(s)
	case majArray:
		if arg > maxContainerLen || arg > uint64(w.r.left()) {
			return it, errJSONTooLong
		}
		if depth >= maxJSONDepth {
			return it, errJSONDepth
		}
		w.buf = append(w.buf, '[')
		for i := range int(arg) {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			if _, err := w.value(depth + 1); err != nil {
				return it, err
			}
		}
		w.buf = append(w.buf, ']')
	case majMap:
		if arg > maxContainerLen || arg > uint64(w.r.left())/2 {
			return it, errJSONTooLong
		}
		if depth >= maxJSONDepth {
			return it, errJSONDepth
		}
		return w.object(int(arg), depth, it)
	case majTag:
		if arg != cborTagLink {
			return it, errJSONTag
		}
		maj, n, err := w.r.head()
		if err != nil {
			return it, err
		}
		if maj != majBytes {
			return it, errJSONLink
		}
		b, err := w.r.bytes(n)
		if err != nil {
			return it, err
		}
		// go-ipld-cbor: a binary multibase prefix, then a CID that go-cid casts.
		if len(b) == 0 || b[0] != 0 || !castCID(b[1:]) {
			return it, errJSONLink
		}
		it.kind = jsonLink
		w.buf = append(w.buf, jsonLinkPrefix...)
		w.buf = appendCIDString(w.buf, b[1:])
		w.buf = append(w.buf, jsonLinkSuffix...)
	default: // majOther: the additional information tells simple values and floats apart
		var f float64
		switch w.r.b[start] & 0x1f {
		case cborSimpleFalse:
			w.buf = append(w.buf, "false"...)
			return w.done(it), nil
		case cborSimpleTrue:
			w.buf = append(w.buf, "true"...)
			return w.done(it), nil
		case cborSimpleNull, cborSimpleUndef: // atdata reads undefined as nil too
			w.buf = append(w.buf, "null"...)
			return w.done(it), nil
		case cborFloat16:
			f = float16(uint16(arg))
		case cborFloat32:
			f = float64(math.Float32frombits(uint32(arg)))
		case cborFloat64:
			f = math.Float64frombits(arg)
		default:
			return it, errJSONSimple
		}
		// atdata keeps a float only when it is an int64 exactly.
		if !(f >= -(1<<63) && f < 1<<63) || f != math.Trunc(f) {
			return it, errJSONFloat
		}
		it.kind, it.n = jsonInt, int64(f)
		w.buf = strconv.AppendInt(w.buf, it.n, 10)
	}
	return w.done(it), nil
}

// done records the end of an item's JSON.
func (w *jsonWriter) done(it jsonItem) jsonItem {
	it.out1 = len(w.buf)
	return it
}

// float16 converts an IEEE 754 half-precision float to a float64.
func float16(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(frac+1024, exp-25)
}

// objState is what object learns of a map's special keys while it writes the map generically.
type objState struct {
	link, bytes, typ, mime, cid, ref, size jsonItem
	has                                    uint8 // bits of the keys seen, see the key* constants
}

// Special keys of atdata's maps.
const (
	keyLink = 1 << iota
	keyBytes
	keyType
	keyMime
	keyCID
	keyRef
	keySize
)

// object transcodes a map of n entries whose head has been read, then checks or rewrites it
// the way atdata treats $link, $bytes, blob and legacy blob maps. Its keys are written in the
// order json.Marshal writes them: sorted (encoding/json sorts map keys, and indigo's generated
// structs declare their fields sorted), except a blob's, in atdata.BlobSchema's order.
func (w *jsonWriter) object(n, depth int, it jsonItem) (jsonItem, error) {
	var st objState
	base := len(w.ents)
	defer func() { w.ents = w.ents[:base] }()
	w.buf = append(w.buf, '{')
	for i := range n {
		if i > 0 {
			w.buf = append(w.buf, ',')
		}
		key, err := w.r.text()
		if errors.Is(err, errNotText) {
			return it, errJSONKey
		}
		if err != nil {
			return it, err
		}
		if len(key) > maxKeyLen {
			return it, errJSONTooLong
		}
		start, raw := len(w.buf), key
		key = w.appendString(key)
		w.buf = append(w.buf, ':')
		v, err := w.value(depth + 1)
		if err != nil {
			return it, err
		}
		w.ents = append(w.ents, jsonEntry{key: key, raw: raw, start: start, end: len(w.buf)})
		switch string(key) {
		case "$link":
			st.link, st.has = v, st.has|keyLink
		case "$bytes":
			st.bytes, st.has = v, st.has|keyBytes
		case "$type":
			st.typ, st.has = v, st.has|keyType
		case "mimeType":
			st.mime, st.has = v, st.has|keyMime
		case "cid":
			st.cid, st.has = v, st.has|keyCID
		case "ref":
			st.ref, st.has = v, st.has|keyRef
		case "size":
			st.size, st.has = v, st.has|keySize
		}
	}
	w.buf = append(w.buf, '}')
	it.kind = jsonObject
	it.out1 = len(w.buf)
	switch {
	case st.has&keyLink != 0:
		return w.linkObject(n, st.link, it)
	case st.has&keyBytes != 0:
		return w.bytesObject(n, st.bytes, it)
	case st.has&keyType != 0:
		if st.typ.kind != jsonText || len(st.typ.inText) == 0 {
			return it, errJSONType
		}
		if string(st.typ.inText) == "blob" {
			return w.blobObject(n, &st, it, base)
		}
	case n == 2 && st.has&(keyMime|keyCID) == keyMime|keyCID:
		return w.legacyBlob(st.cid, st.mime, it)
	}
	w.order(base, it, keyLess)
	if repeatedKey(w.ents[base:]) {
		return it, errJSONRepeatedKey
	}
	return it, nil
}

// repeatedKey reports whether a key appears twice in ents, sorted by cleaned key, as atdata
// (refmt) rejects. Keys that only cleaning makes equal are no repetition.
func repeatedKey(ents []jsonEntry) bool {
	for i := 1; i < len(ents); i++ {
		if string(ents[i].key) != string(ents[i-1].key) {
			continue
		}
		j := i + 1 // ents[i-1:j] share a cleaned key
		for j < len(ents) && string(ents[j].key) == string(ents[i].key) {
			j++
		}
		for p := i - 1; p < j; p++ {
			for q := p + 1; q < j; q++ {
				if string(ents[p].raw) == string(ents[q].raw) {
					return true
				}
			}
		}
		i = j
	}
	return false
}

// keyLess orders keys as encoding/json orders map keys.
func keyLess(a, b []byte) bool { return string(a) < string(b) }

// blobRank is the position of a blob's keys in atdata.BlobSchema.
func blobRank(k []byte) int {
	switch string(k) {
	case "$type":
		return 0
	case "ref":
		return 1
	case "mimeType":
		return 2
	}
	return 3
}

// blobLess orders a blob's keys as atdata.BlobSchema declares them.
func blobLess(a, b []byte) bool { return blobRank(a) < blobRank(b) }

// order rewrites the entries w.ents[base:] of the object written at it in the order of less,
// unless they are in that order already.
func (w *jsonWriter) order(base int, it jsonItem, less func(a, b []byte) bool) {
	ents := w.ents[base:]
	sorted := true
	for i := 1; i < len(ents); i++ {
		if less(ents[i].key, ents[i-1].key) {
			sorted = false
			break
		}
	}
	if sorted {
		return
	}
	// Insertion sort: objects are small, and it is stable.
	for i := 1; i < len(ents); i++ {
		for j := i; j > 0 && less(ents[j].key, ents[j-1].key); j-- {
			ents[j], ents[j-1] = ents[j-1], ents[j]
		}
	}
	w.tmp = append(w.tmp[:0], w.buf[it.out0:it.out1]...)
	out := w.buf[:it.out0+1] // after the '{'
	for i, e := range ents {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, w.tmp[e.start-it.out0:e.end-it.out0]...)
	}
	w.buf = append(out, '}')
}

// linkObject checks a {"$link": cid} map and writes it again with the CID in canonical form.
func (w *jsonWriter) linkObject(n int, v jsonItem, it jsonItem) (jsonItem, error) {
	if n != 1 || v.kind != jsonText || len(v.inText) > maxCIDTextLength {
		return it, errJSONLink
	}
	c, err := cid.Parse(string(v.inText))
	if err != nil || !c.Defined() {
		return it, errJSONLink
	}
	w.buf = append(w.buf[:it.out0], jsonLinkPrefix...)
	w.buf = append(w.buf, c.String()...)
	w.buf = append(w.buf, jsonLinkSuffix...)
	it.kind, it.out1 = jsonLink, len(w.buf)
	return it, nil
}

// bytesObject checks a {"$bytes": base64} map and writes it again with the bytes encoded
// canonically.
func (w *jsonWriter) bytesObject(n int, v jsonItem, it jsonItem) (jsonItem, error) {
	if n != 1 || v.kind != jsonText {
		return it, errJSONBytesObj
	}
	b, err := base64.RawStdEncoding.DecodeString(string(v.inText))
	if err != nil {
		return it, errJSONBytesObj
	}
	w.buf = w.buf[:it.out0]
	w.appendBytes(b)
	it.kind, it.out1 = jsonBytes, len(w.buf)
	return it, nil
}

// blobObject checks a {"$type": "blob"} map: exactly ref, mimeType and an integer size beside
// the type. A negative size makes atdata write the blob in the legacy form.
func (w *jsonWriter) blobObject(n int, st *objState, it jsonItem, base int) (jsonItem, error) {
	if n != 4 || st.has&(keyRef|keyMime|keySize) != keyRef|keyMime|keySize ||
		st.size.kind != jsonInt || st.mime.kind != jsonText || st.ref.kind != jsonLink {
		return it, errJSONBlob
	}
	if st.size.n < 0 {
		return w.writeLegacy(w.buf[st.ref.out0+len(jsonLinkPrefix):st.ref.out1-len(jsonLinkSuffix)], st.mime, it)
	}
	w.order(base, it, blobLess)
	return it, nil
}

// legacyBlob checks a {cid, mimeType} map, whose cid atdata parses from a string, bytes or a
// link, and writes it again with the CID in canonical form.
func (w *jsonWriter) legacyBlob(c, mime jsonItem, it jsonItem) (jsonItem, error) {
	if mime.kind != jsonText {
		return it, errJSONBlob
	}
	var s string
	switch c.kind {
	case jsonText:
		if len(c.inText) > maxCIDTextLength {
			return it, errJSONBlob
		}
		p, err := cid.Parse(string(c.inText))
		if err != nil {
			return it, errJSONBlob
		}
		s = p.String()
	case jsonBytes:
		p, err := cid.Cast(c.inText)
		if err != nil {
			return it, errJSONBlob
		}
		s = p.String()
	case jsonLink:
		s = string(w.buf[c.out0+len(jsonLinkPrefix) : c.out1-len(jsonLinkSuffix)])
	default:
		return it, errJSONBlob
	}
	return w.writeLegacy([]byte(s), mime, it)
}

// writeLegacy replaces the map written at it with the legacy blob {"cid": c, "mimeType": m},
// the mimeType's JSON taken from what was written for it.
func (w *jsonWriter) writeLegacy(c []byte, mime jsonItem, it jsonItem) (jsonItem, error) {
	out := make([]byte, 0, len(c)+mime.out1-mime.out0+24)
	out = append(out, `{"cid":"`...)
	out = append(out, c...)
	out = append(out, `","mimeType":`...)
	out = append(out, w.buf[mime.out0:mime.out1]...)
	out = append(out, '}')
	w.buf = append(w.buf[:it.out0], out...)
	it.out1 = len(w.buf)
	return it, nil
}

// appendBytes writes {"$bytes": base64} (standard alphabet, no padding).
func (w *jsonWriter) appendBytes(b []byte) {
	w.buf = append(w.buf, `{"$bytes":"`...)
	w.buf = base64.RawStdEncoding.AppendEncode(w.buf, b)
	w.buf = append(w.buf, `"}`...)
}

// appendString writes s as a JSON string, cleaned as cleanText cleans it, and returns the
// cleaned string.
func (w *jsonWriter) appendString(s []byte) []byte {
	if !utf8.Valid(s) || indexNUL(s) >= 0 {
		c, _ := cleanText(string(s))
		s = []byte(c)
		w.cleaned = true
	}
	w.buf = appendJSONString(w.buf, s)
	return s
}

// indexNUL returns the index of the first NUL byte of s, or -1.
func indexNUL(s []byte) int {
	for i, c := range s {
		if c == 0 {
			return i
		}
	}
	return -1
}

// hexDigits are the digits of \u escapes.
const hexDigits = "0123456789abcdef"

// appendJSONString appends s, valid UTF-8, as a JSON string escaped as encoding/json escapes
// it: quotes and backslashes, control characters (\b, \f, \n, \r and \t by name), the HTML
// characters <, > and &, and U+2028 and U+2029.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' && c != 0xe2 {
			continue
		}
		if c == 0xe2 { // U+2028 and U+2029 are E2 80 A8 and E2 80 A9
			if i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xa8 || s[i+2] == 0xa9) {
				dst = append(dst, s[start:i]...)
				dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[s[i+2]&0xf])
				i += 2
				start = i + 1
			}
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
