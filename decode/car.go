package decode

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
)

// Errors of the CAR walker.
var (
	errCARHeader  = errors.New("decode: bad CAR header")
	errCARVersion = errors.New("decode: CAR version is not 1")
	errCARBlock   = errors.New("decode: bad CAR block")
	errCID        = errors.New("decode: bad CID in CAR block")
)

// carBlock is one block of a CAR slice: its CID in binary form and its data, both slices of
// the CAR bytes.
type carBlock struct {
	cid  []byte
	data []byte
}

// linearMax is the block count up to which a lookup scans the blocks instead of hashing: a
// typical commit carries a handful of MST nodes, its records and the commit block.
const linearMax = 16

// carIndex is the blocks of one commit's CAR slice, found by CID. It is reused across commits:
// parse resets it without freeing its memory.
type carIndex struct {
	blocks []carBlock
	table  []int32 // open addressing, 1 + index into blocks, 0 empty; used above linearMax
	seed   maphash.Seed
}

// parse walks a CARv1 slice: a varint-prefixed DAG-CBOR header {roots, version: 1}, then
// varint-prefixed blocks of CID and data. On error the index is left empty.
func (x *carIndex) parse(car []byte) error {
	x.blocks = x.blocks[:0]
	if err := x.walk(car); err != nil {
		x.blocks = x.blocks[:0]
		return err
	}
	if len(x.blocks) > linearMax {
		x.buildTable()
	}
	return nil
}

func (x *carIndex) walk(car []byte) error {
	hlen, n := binary.Uvarint(car)
	if n <= 0 || hlen > uint64(len(car)-n) {
		return errCARHeader
	}
	if err := checkCARHeader(car[n : n+int(hlen)]); err != nil {
		return err
	}
	off := n + int(hlen)
	for off < len(car) {
		blen, n := binary.Uvarint(car[off:])
		if n <= 0 || blen == 0 || blen > uint64(len(car)-off-n) {
			return errCARBlock
		}
		blk := car[off+n : off+n+int(blen)]
		cl, err := cidLen(blk)
		if err != nil {
			return err
		}
		x.blocks = append(x.blocks, carBlock{cid: blk[:cl], data: blk[cl:]})
		off += n + int(blen)
	}
	return nil
}

// checkCARHeader checks that the header is one CBOR map with version 1 and a roots array.
func checkCARHeader(b []byte) error {
	r := cborReader{b: b}
	n, err := r.mapLen()
	if err != nil {
		return errCARHeader
	}
	version, roots := false, false
	for range n {
		key, err := r.text()
		if err != nil {
			return errCARHeader
		}
		switch string(key) {
		case "version":
			v, err := r.int()
			if err != nil {
				return errCARHeader
			}
			if v != 1 {
				return errCARVersion
			}
			version = true
		case "roots":
			if r.off >= len(b) || b[r.off]>>5 != majArray {
				return errCARHeader
			}
			roots = true
			fallthrough
		default:
			if err := r.skip(); err != nil {
				return errCARHeader
			}
		}
	}
	if !version || !roots || r.off != len(b) {
		return errCARHeader
	}
	return nil
}

// cidLen returns the length of the binary CID at the start of b: a CIDv0 (a bare sha2-256
// multihash) or a CIDv1 (version, codec, multihash code, digest length, digest).
func cidLen(b []byte) (int, error) {
	if len(b) >= 2 && b[0] == 0x12 && b[1] == 0x20 {
		if len(b) < 34 {
			return 0, errCID
		}
		return 34, nil
	}
	// Common case: a CIDv1 whose codec, hash code and digest length fit in one byte each.
	if len(b) >= 4 && b[0] == 1 && b[1] < 0x80 && b[2] < 0x80 && b[3] < 0x80 {
		if int(b[3]) > len(b)-4 {
			return 0, errCID
		}
		return 4 + int(b[3]), nil
	}
	off := 0
	var fields [4]uint64
	for i := range fields {
		v, n := binary.Uvarint(b[off:])
		if n <= 0 {
			return 0, errCID
		}
		fields[i] = v
		off += n
	}
	if fields[0] != 1 || fields[3] > uint64(len(b)-off) {
		return 0, errCID
	}
	return off + int(fields[3]), nil
}

// buildTable indexes the blocks by CID hash.
func (x *carIndex) buildTable() {
	size := 32
	for size < 2*len(x.blocks) {
		size *= 2
	}
	if cap(x.table) >= size {
		x.table = x.table[:size]
		clear(x.table)
	} else {
		x.table = make([]int32, size)
	}
	mask := uint64(size - 1)
	for i, b := range x.blocks {
		h := maphash.Bytes(x.seed, b.cid) & mask
		for x.table[h] != 0 {
			h = (h + 1) & mask
		}
		x.table[h] = int32(i + 1)
	}
}

// find returns the data of the block whose binary CID is key (cid.Cid.KeyString), or false.
func (x *carIndex) find(key []byte) ([]byte, bool) {
	if len(x.blocks) <= linearMax {
		for i := range x.blocks {
			if string(x.blocks[i].cid) == string(key) {
				return x.blocks[i].data, true
			}
		}
		return nil, false
	}
	mask := uint64(len(x.table) - 1)
	h := maphash.Bytes(x.seed, key) & mask
	for {
		j := x.table[h]
		if j == 0 {
			return nil, false
		}
		if string(x.blocks[j-1].cid) == string(key) {
			return x.blocks[j-1].data, true
		}
		h = (h + 1) & mask
	}
}

// newSeed returns a hash seed for a carIndex.
func newSeed() maphash.Seed { return maphash.MakeSeed() }
