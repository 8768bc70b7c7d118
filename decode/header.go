package decode

import (
	"fmt"
)

// Frame header op values.
const (
	opMessage = 1
	opError   = -1
)

// PeekHeader reads a frame's header and the body's seq, time and DID (and, for error frames
// and #info, their name and message) without decoding the rest of the body. It checks the whole
// frame's CBOR structure: a truncated or malformed frame, or bytes after the body, give an
// error. It allocates only the strings it returns.
func PeekHeader(frame []byte) (Header, error) {
	var h Header
	r := cborReader{b: frame}
	if err := readFrameHeader(&r, &h); err != nil {
		return Header{}, fmt.Errorf("frame header: %w", err)
	}
	if err := scanBody(&r, &h); err != nil {
		return Header{}, fmt.Errorf("frame body: %w", err)
	}
	if r.off != len(frame) {
		return Header{}, fmt.Errorf("frame body: %w", errTrailing)
	}
	return h, nil
}

// readFrameHeader reads the header map {op, t} and sets h's Op, Type and Kind.
func readFrameHeader(r *cborReader, h *Header) error {
	n, err := r.mapLen()
	if err != nil {
		return err
	}
	var t []byte
	for range n {
		key, err := r.text()
		if err != nil {
			return err
		}
		switch string(key) {
		case "op":
			if h.Op, err = r.int(); err != nil {
				return fmt.Errorf("op: %w", err)
			}
		case "t":
			if t, _, err = r.textOrNull(); err != nil {
				return fmt.Errorf("t: %w", err)
			}
		default:
			if err := r.skip(); err != nil {
				return err
			}
		}
	}
	var kind Kind
	h.Type, kind = messageType(t)
	switch h.Op {
	case opMessage:
		h.Kind = kind
	case opError:
		h.Kind = KindError
	default:
		h.Kind = KindUnknown
	}
	return nil
}

// messageType returns the header's t as a string (a constant for known types, so the common
// case does not allocate) and its Kind.
func messageType(t []byte) (string, Kind) {
	switch string(t) {
	case "#commit":
		return "#commit", KindCommit
	case "#identity":
		return "#identity", KindIdentity
	case "#account":
		return "#account", KindAccount
	case "#sync":
		return "#sync", KindSync
	case "#info":
		return "#info", KindInfo
	case "":
		return "", KindUnknown
	}
	return string(t), KindUnknown
}

// scanBody reads the body map, keeping seq, time, repo/did and, by kind, error, name and
// message, and skipping every other value (blocks, ops) unread. The bodies of error frames and
// of types this package does not know have no schema here: a field of another type than the
// known types' (a seq that is not an integer, a time or message that is not text) is skipped
// as absent, so that such a frame is still read: counted, stored when it has a seq, and an
// error frame acted on by its name. The known types' fields must have their types, as indigo's
// decoders require.
func scanBody(r *cborReader, h *Header) error {
	n, err := r.mapLen()
	if err != nil {
		return err
	}
	lenient := h.Kind == KindUnknown || h.Kind == KindError
	for range n {
		key, err := r.text()
		if err != nil {
			return err
		}
		if lenient && !r.fits(key) {
			if err := r.skip(); err != nil {
				return err
			}
			continue
		}
		var dst *string // the string field this key fills, if any
		switch string(key) {
		case "seq":
			if h.Seq, err = r.int(); err != nil {
				return fmt.Errorf("seq: %w", err)
			}
			h.HasSeq = true
			continue
		case "time":
			s, ok, err := r.textOrNull()
			if err != nil {
				return fmt.Errorf("time: %w", err)
			}
			if ok {
				h.Time, _ = parseEventTime(s)
			}
			continue
		case "repo", "did":
			dst = &h.DID
		case "error":
			if h.Kind == KindError {
				dst = &h.ErrorName
			}
		case "message":
			if h.Kind == KindError || h.Kind == KindInfo {
				dst = &h.Message
			}
		case "name":
			if h.Kind == KindInfo {
				dst = &h.InfoName
			}
		}
		if dst == nil {
			if err := r.skip(); err != nil {
				return err
			}
			continue
		}
		s, ok, err := r.textOrNull()
		if err != nil {
			return fmt.Errorf("field %q: %w", key, err)
		}
		if ok {
			*dst = string(s)
		}
	}
	return nil
}

// fits reports whether the value at the reader's offset has the type scanBody reads for key:
// an integer for seq, text or null for the string fields, anything for the others.
func (r *cborReader) fits(key []byte) bool {
	if r.off >= len(r.b) {
		return true // the read fails as it should
	}
	b := r.b[r.off]
	switch string(key) {
	case "seq":
		return b>>5 == majUint || b>>5 == majNeg
	case "time", "repo", "did", "error", "message", "name":
		return b>>5 == majText || b == cborNull
	}
	return true
}
