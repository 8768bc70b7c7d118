package loader

import "hash/maphash"

// seenBits is the size of the filter of keys a run wrote (16 MiB), and seenHashes how many bits
// a key sets: about 1% false positives at seenBits/10 keys, when the filter starts over.
const (
	seenBits   = 1 << 27
	seenHashes = 4
)

// seenKeys remembers, approximately, the keys of the creates of the run's committed units: a
// Bloom filter of the uris (dids in users) and pairs by table. A create whose uri or pair it
// may hold is a suspect: a blind COPY probes it first (direct.go), so that a row written by an
// earlier unit does not fail the COPY. A false positive costs one probed row; a key forgotten
// when the filter starts over costs what a row written before the run costs: a blind COPY
// that fails, is undone and probed. Only the writer goroutine uses it.
type seenKeys struct {
	bits []uint64
	n    int // keys added since the filter was empty
	h    maphash.Hash
}

// hashes returns the filter hashes of a uri (pair zero) or of a pair of table tab.
func (s *seenKeys) hashes(tab Table, uri string, pair pairKey) uint64 {
	s.h.Reset()
	s.h.WriteByte(byte(tab))
	if uri != "" {
		s.h.WriteByte('u')
		s.h.WriteString(uri)
	} else {
		s.h.WriteByte('p')
		s.h.WriteString(pair.a)
		s.h.WriteByte(0)
		s.h.WriteString(pair.b)
	}
	return s.h.Sum64()
}

func (s *seenKeys) test(h uint64) bool {
	h1, h2 := uint32(h), uint32(h>>32)|1
	for i := range uint32(seenHashes) {
		b := (h1 + i*h2) & (seenBits - 1)
		if s.bits[b/64]&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}

func (s *seenKeys) set(h uint64) {
	h1, h2 := uint32(h), uint32(h>>32)|1
	for i := range uint32(seenHashes) {
		b := (h1 + i*h2) & (seenBits - 1)
		s.bits[b/64] |= 1 << (b % 64)
	}
}

// mayHave reports whether a create of tab with this uri or pair (zero for tables without
// pairs) may have been added.
func (s *seenKeys) mayHave(tab Table, uri string, pair pairKey) bool {
	if s.n == 0 {
		return false
	}
	if s.test(s.hashes(tab, uri, pairKey{})) {
		return true
	}
	return pair != (pairKey{}) && s.test(s.hashes(tab, "", pair))
}

// add remembers a create of tab; the filter starts over when it holds seenBits/10 keys.
func (s *seenKeys) add(tab Table, uri string, pair pairKey) {
	if s.bits == nil {
		s.bits = make([]uint64, seenBits/64)
		s.h.SetSeed(maphash.MakeSeed())
	}
	if s.n >= seenBits/10 {
		clear(s.bits)
		s.n = 0
	}
	s.set(s.hashes(tab, uri, pairKey{}))
	s.n++
	if pair != (pairKey{}) {
		s.set(s.hashes(tab, "", pair))
		s.n++
	}
}

// addUnit remembers the creates of a committed unit's posts and pair tables.
func (s *seenKeys) addUnit(p *unitPlan) {
	for _, st := range p.postRows {
		s.add(TablePosts, st.row.URI, pairKey{})
	}
	for i := range p.pairs {
		for j := range p.pairs[i] {
			if op := &p.pairs[i][j]; !op.del {
				s.add(TableLikes+Table(i), op.uri, op.key)
			}
		}
	}
}
