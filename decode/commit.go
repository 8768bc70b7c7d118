package decode

import (
	"errors"
	"fmt"
	"math"
)

// This file reads a #commit body, in place of comatproto.SyncSubscribeRepos_Commit's cbor-gen
// code, keeping only what decodeCommit uses and checking everything else as that code does,
// so that it accepts and rejects the same bodies. The rules of cbor-gen it follows: every head
// is minimally encoded, maps of a struct have at most 8192 entries and arrays at most 8192
// elements, strings at most 1,000,000 bytes, keys are text strings, a key longer than the
// longest field name or a key of no field is skipped by cbor-gen's ScanForLinks (which checks
// every CID link in it), a repeated key overwrites the field except that an empty array or a
// null leaves it as it was, CID links have a binary multibase prefix and at most 512 bytes.
// Like cbor-gen after checkMapItem, it rejects truncated items, indefinite lengths and bytes
// after the map.

// Limits of cbor-gen's generated code.
const (
	cbgMaxLength   = 8192    // entries of a struct map, elements of an array
	cbgMaxString   = 1000000 // bytes of a string
	cbgMaxCIDBytes = 512     // bytes of a tagged CID (ReadCid)
	cbgMaxScanCID  = 100     // bytes of a tagged CID inside a skipped value (ScanForLinks)
	commitFieldMax = 8       // longest field name of the commit struct ("prevData")
	repoOpFieldMax = 6       // longest field name of the op struct ("action")
)

// Errors of the commit scanner.
var (
	errNotCanonical = errors.New("decode: CBOR head not minimally encoded")
	errCBGType      = errors.New("decode: CBOR item of the wrong type for its field")
	errCBGLength    = errors.New("decode: CBOR item longer than cbor-gen allows")
	errCBGCID       = errors.New("decode: bad CID link")
)

// commitOp is one op of a commit as the scanner reads it. Its byte slices point into the frame.
type commitOp struct {
	null   bool   // the op was null
	action []byte // empty when absent
	path   []byte
	cid    []byte // the binary CID (as cid.Cid.KeyString), nil when absent or null
}

// commitEnv is what decodeCommit uses of a #commit body. Its byte slices point into the frame.
type commitEnv struct {
	seq    int64
	repo   []byte
	time   []byte
	blocks []byte // the CAR slice, nil when the body has none
	ops    []commitOp
}

// scanCommit reads a #commit body into env, reusing env.ops. It reads the body whole and
// rejects what checkMapItem rejects (truncated items, indefinite lengths, bytes after the map),
// so Decode does not run that check first on commits.
func scanCommit(body []byte, env *commitEnv) error {
	ops := env.ops[:0]
	*env = commitEnv{}
	r := cborReader{b: body}
	err := cbgStruct(&r, commitFieldMax, func(key []byte) (bool, error) {
		var err error
		switch string(key) {
		case "ops":
			l, err := arrayLen(&r)
			if err != nil || l == 0 {
				return true, err // cbor-gen keeps the ops of an earlier key when this one is empty
			}
			ops = ops[:0]
			for range l {
				var op commitOp
				if r.peekNull() {
					op.null = true
				} else if err := scanRepoOp(&r, &op); err != nil {
					return true, fmt.Errorf("op: %w", err)
				}
				ops = append(ops, op)
			}
			env.ops = ops
		case "seq":
			if env.seq, err = cbgInt(&r); err != nil {
				return true, fmt.Errorf("seq: %w", err)
			}
		case "repo":
			if env.repo, err = cbgString(&r); err != nil {
				return true, fmt.Errorf("repo: %w", err)
			}
		case "time":
			if env.time, err = cbgString(&r); err != nil {
				return true, fmt.Errorf("time: %w", err)
			}
		case "rev":
			if _, err = cbgString(&r); err != nil {
				return true, fmt.Errorf("rev: %w", err)
			}
		case "since":
			if !r.peekNull() {
				if _, err = cbgString(&r); err != nil {
					return true, fmt.Errorf("since: %w", err)
				}
			}
		case "blocks":
			// Decode used to hand cbor-gen the body with this byte string emptied (so its
			// head and size were never checked): only its type matters.
			maj, l, err := r.head()
			if err != nil {
				return true, err
			}
			if maj != majBytes {
				return true, fmt.Errorf("blocks: %w", errCBGType)
			}
			env.blocks, err = r.bytes(l)
			return true, err
		case "commit":
			if _, err = cbgCID(&r); err != nil {
				return true, fmt.Errorf("commit: %w", err)
			}
		case "prevData":
			if !r.peekNull() {
				if _, err = cbgCID(&r); err != nil {
					return true, fmt.Errorf("prevData: %w", err)
				}
			}
		case "blobs":
			l, err := arrayLen(&r)
			if err != nil {
				return true, err
			}
			for range l {
				if _, err := cbgCID(&r); err != nil {
					return true, fmt.Errorf("blobs: %w", err)
				}
			}
		case "rebase", "tooBig":
			if err := cbgBool(&r); err != nil {
				return true, fmt.Errorf("%s: %w", key, err)
			}
		default:
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if r.off != len(body) {
		return errTrailing
	}
	if env.ops == nil {
		env.ops = ops[:0]
	}
	return nil
}

// scanRepoOp reads one op map.
func scanRepoOp(r *cborReader, op *commitOp) error {
	return cbgStruct(r, repoOpFieldMax, func(key []byte) (bool, error) {
		var err error
		switch string(key) {
		case "action":
			if op.action, err = cbgString(r); err != nil {
				return true, fmt.Errorf("action: %w", err)
			}
		case "path":
			if op.path, err = cbgString(r); err != nil {
				return true, fmt.Errorf("path: %w", err)
			}
		case "cid":
			if !r.peekNull() { // a null leaves an earlier cid, as in cbor-gen
				if op.cid, err = cbgCID(r); err != nil {
					return true, fmt.Errorf("cid: %w", err)
				}
			}
		case "prev":
			if !r.peekNull() {
				if _, err = cbgCID(r); err != nil {
					return true, fmt.Errorf("prev: %w", err)
				}
			}
		default:
			return false, nil
		}
		return true, nil
	})
}

// canonicalHead reads a head as cbor-gen's CborReadHeaderBuf does: its argument must be
// minimally encoded, whatever the major type (floats included).
func canonicalHead(r *cborReader) (byte, uint64, error) {
	start := r.off
	maj, arg, err := r.head()
	if err != nil {
		return 0, 0, err
	}
	switch r.b[start] & 0x1f {
	case 24:
		if arg < 24 {
			return 0, 0, errNotCanonical
		}
	case 25:
		if arg <= math.MaxUint8 {
			return 0, 0, errNotCanonical
		}
	case 26:
		if arg <= math.MaxUint16 {
			return 0, 0, errNotCanonical
		}
	case 27:
		if arg <= math.MaxUint32 {
			return 0, 0, errNotCanonical
		}
	}
	return maj, arg, nil
}

// structLen reads the head of a struct's map.
func structLen(r *cborReader) (int, error) {
	maj, n, err := canonicalHead(r)
	if err != nil {
		return 0, err
	}
	if maj != majMap {
		return 0, errNotMap
	}
	if n > cbgMaxLength {
		return 0, errCBGLength
	}
	return int(n), nil
}

// fieldName reads a struct key as cbor-gen's ReadFullStringIntoBuf does with a buffer of max
// bytes: a key longer than that is no field (nil).
func fieldName(r *cborReader, max int) ([]byte, error) {
	key, err := cbgString(r)
	if err != nil || len(key) > max {
		return nil, err
	}
	return key, nil
}

// arrayLen reads the head of an array field.
func arrayLen(r *cborReader) (int, error) {
	maj, n, err := canonicalHead(r)
	if err != nil {
		return 0, err
	}
	if n > cbgMaxLength {
		return 0, errCBGLength
	}
	if maj != majArray {
		return 0, errCBGType
	}
	return int(n), nil
}

// cbgString reads a string field.
func cbgString(r *cborReader) ([]byte, error) {
	maj, l, err := canonicalHead(r)
	if err != nil {
		return nil, err
	}
	if maj != majText {
		return nil, errNotText
	}
	if l > cbgMaxString {
		return nil, errCBGLength
	}
	return r.bytes(l)
}

// cbgInt reads an int64 field.
func cbgInt(r *cborReader) (int64, error) {
	maj, arg, err := canonicalHead(r)
	if err != nil {
		return 0, err
	}
	return intValue(maj, arg)
}

// cbgBool reads a bool field.
func cbgBool(r *cborReader) error {
	maj, arg, err := canonicalHead(r)
	if err != nil {
		return err
	}
	if maj != majOther || arg != cborSimpleFalse && arg != cborSimpleTrue {
		return errCBGType
	}
	return nil
}

// cbgCID reads a CID link as cbor-gen's ReadCid does and returns the binary CID.
func cbgCID(r *cborReader) ([]byte, error) {
	maj, tag, err := canonicalHead(r)
	if err != nil {
		return nil, err
	}
	if maj != majTag || tag != cborTagLink {
		return nil, errCBGCID
	}
	maj, l, err := canonicalHead(r)
	if err != nil {
		return nil, err
	}
	if maj != majBytes || l > cbgMaxCIDBytes {
		return nil, errCBGCID
	}
	b, err := r.bytes(l)
	if err != nil {
		return nil, err
	}
	if len(b) < 2 || b[0] != 0 || !castCID(b[1:]) {
		return nil, errCBGCID
	}
	return b[1:], nil
}

// scanForLinks skips one item as cbor-gen's ScanForLinks does: canonical heads, and every
// CID link a byte string of 1 to 100 bytes whose bytes after the first go-cid casts.
func scanForLinks(r *cborReader) error {
	for remaining := uint64(1); remaining > 0; remaining-- {
		maj, arg, err := canonicalHead(r)
		if err != nil {
			return err
		}
		switch maj {
		case majBytes, majText:
			if _, err := r.bytes(arg); err != nil {
				return err
			}
		case majTag:
			if arg != cborTagLink {
				remaining++
				continue
			}
			maj, l, err := canonicalHead(r)
			if err != nil {
				return err
			}
			if maj != majBytes || l > cbgMaxScanCID || l == 0 {
				return errCBGCID
			}
			b, err := r.bytes(l)
			if err != nil {
				return err
			}
			if !castCID(b[1:]) {
				return errCBGCID
			}
		case majArray:
			if arg > uint64(r.left()) { // every element takes a byte
				return errTruncated
			}
			remaining += arg
		case majMap:
			if arg > uint64(r.left())/2 {
				return errTruncated
			}
			remaining += 2 * arg
		}
	}
	return nil
}
