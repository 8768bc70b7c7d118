package decode

import (
	"encoding/base32"

	"github.com/ipfs/go-cid"
)

// castCID reports whether go-cid's cid.Cast accepts b, a binary CID, without allocating: a
// CIDv0 (a sha2-256 multihash, exactly 34 bytes) or a CIDv1 (version 1, codec and a multihash
// whose digest fits, every varint minimally encoded) with no bytes after it.
func castCID(b []byte) bool {
	if len(b) > 2 && b[0] == 0x12 && b[1] == 32 {
		return len(b) == 34
	}
	vers, n, ok := minUvarint(b)
	if !ok || vers != 1 {
		return false
	}
	_, cn, ok := minUvarint(b[n:])
	if !ok {
		return false
	}
	mh := b[n+cn:]
	if len(mh) < 2 {
		return false
	}
	_, hn, ok := minUvarint(mh)
	if !ok {
		return false
	}
	l, ln, ok := minUvarint(mh[hn:])
	if !ok || l > uint64(len(mh)-hn-ln) {
		return false
	}
	return hn+ln+int(l) == len(mh)
}

// minUvarint reads a varint as go-varint's FromUvarint does: at most 9 bytes and minimally
// encoded.
func minUvarint(b []byte) (uint64, int, bool) {
	var x uint64
	var s uint
	for i, c := range b {
		if i == 8 && c >= 0x80 {
			return 0, 0, false
		}
		if c < 0x80 {
			if c == 0 && s > 0 {
				return 0, 0, false
			}
			return x | uint64(c)<<s, i + 1, true
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0, false
}

// cidBase32 is multibase's base32 (RFC 4648 lower case, no padding), the encoding of CIDv1
// strings.
var cidBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// appendCIDString appends cid.Cid.String() of b, a binary CID that castCID accepts: "b" and
// base32 for a CIDv1, go-cid's base58 for a CIDv0.
func appendCIDString(dst, b []byte) []byte {
	if len(b) == 34 && b[0] == 0x12 && b[1] == 32 {
		c, err := cid.Cast(b)
		if err != nil { // castCID accepted it: cannot happen
			return dst
		}
		return append(dst, c.String()...)
	}
	dst = append(dst, 'b')
	return cidBase32.AppendEncode(dst, b)
}

// cidString returns cid.Cid.String() of b, a binary CID that castCID accepts.
func cidString(b []byte) string {
	var buf [96]byte
	return string(appendCIDString(buf[:0], b))
}
