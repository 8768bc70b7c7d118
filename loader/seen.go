package loader

import (
	"hash/maphash"
	"math/bits"
)

// seenWords is the size of the filter of keys a run wrote, in 64-bit words (16 MiB); a key
// sets seenHashes bits of one word. It starts over at seenWords*6 keys, where about 2% of
// lookups of keys never added find all their bits set.
const (
	seenWords  = 1 << 21
	seenHashes = 4
	seenCap    = seenWords * 6
)

// seenSeed seeds the key hashes of every filter of the process.
var seenSeed = maphash.MakeSeed()

// keyHash is a key's hash in the filter: a uri (a did in users) or a pair, by table. The planner
// computes them, so that the writer, which feeds the database, only tests and sets bits.
type keyHash uint64

// mix64 is the finalizer of MurmurHash3: every bit of the result depends on every bit of x.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// uriHash returns the filter hash of a uri of tab.
func uriHash(tab Table, uri string) keyHash {
	return keyHash(mix64(maphash.String(seenSeed, uri) ^ uint64(tab)<<1))
}

// pairHash returns the filter hash of a pair of tab.
func pairHash(tab Table, k pairKey) keyHash {
	a, b := maphash.String(seenSeed, k.a), maphash.String(seenSeed, k.b)
	return keyHash(mix64(a ^ bits.RotateLeft64(b, 31) ^ uint64(tab)<<1 ^ 1))
}

// seenKeys remembers, approximately, the keys of the creates of the run's committed units
// (added while the server commits them: a unit whose commit fails is retried with its own
// creates suspect, which costs a probe and changes nothing else): a blocked Bloom filter (each
// key's bits in one word, one cache miss a lookup) of the uris and pairs by table. A create whose uri or pair it may hold is a suspect: a blind COPY probes it
// first (direct.go), so that a row written by an earlier unit does not fail the COPY. A false
// positive costs one probed row; a key forgotten when the filter starts over costs what a row
// written before the run costs: a blind COPY that fails, is undone and probed. Only the writer
// goroutine uses it.
type seenKeys struct {
	words []uint64
	n     int // keys added since the filter was empty
}

// slot returns the word of h and the bits h sets in it.
func slot(h keyHash) (int, uint64) {
	x := uint64(h)
	var mask uint64
	for i := range seenHashes {
		mask |= 1 << (x >> (6 * i) & 63)
	}
	return int(x>>40) & (seenWords - 1), mask
}

// has reports whether h may have been added.
func (s *seenKeys) has(h keyHash) bool {
	if s.n == 0 {
		return false
	}
	w, m := slot(h)
	return s.words[w]&m == m
}

// add remembers h; the filter starts over when it holds seenCap keys.
func (s *seenKeys) add(h keyHash) {
	if s.words == nil {
		s.words = make([]uint64, seenWords)
	}
	if s.n >= seenCap {
		clear(s.words)
		s.n = 0
	}
	w, m := slot(h)
	s.words[w] |= m
	s.n++
}

// addUnit remembers the creates of a committed unit's posts and pair tables.
func (s *seenKeys) addUnit(p *unitPlan) {
	for _, st := range p.postRows {
		s.add(st.hash)
	}
	for i := range p.pairs {
		for j := range p.pairs[i] {
			if op := &p.pairs[i][j]; !op.del {
				s.add(op.uh)
				s.add(op.ph)
			}
		}
	}
}
