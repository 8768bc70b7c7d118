package loader

import (
	"cmp"
	"slices"
	"strings"
)

// Phases: how a pair table's ops become a few set-based statements with the exact result of
// applying them one at a time.
//
// A phase is applied as "DELETE ... WHERE uri = ANY(deletes)" and then "INSERT ... SELECT the
// phase's creates ORDER BY pos ON CONFLICT DO NOTHING". That equals sequential application when
// no delete that follows a create of the same phase could change that create's outcome. Moving a
// delete d of uri u before a create c (u != c.uri) changes nothing unless the row at u blocked c,
// i.e. had c's pair; the row at u when d runs is the row at u when the phase starts (a create at u
// in the phase already forces a cut), so it suffices to cut when u is a create's uri in the phase
// or a pair the row at u may have equals a create's pair in the phase. The pairs the row at u may
// have are tracked conservatively: the pre-existing row's pair (read from the database), plus the
// pair of every create at u since the last delete of u.
//
// Cancellation keeps the common "like, then unlike" from cutting: for a create c at u followed by
// a delete of u with no op between them touching uri u or c's pair, applying c then the delete
// equals applying the delete alone (if c was inserted, nothing in between noticed it and the
// delete removes it; if it was blocked it did nothing), so c is dropped.

// phasedRow is a create that survives planning, with its phase.
type phasedRow struct {
	phase int32
	op    *pairOp
}

// phasePlan is a pair table's ops as phases.
type phasePlan struct {
	deletes [][]string  // uris deleted at the start of each phase
	rows    []phasedRow // creates in pos order
	ordered []bool      // per phase: creates may conflict with each other, so ORDER BY pos matters
	phases  int
	pairs   map[pairKey]*pairTrack // the pair of every create (dropped or not), and of pre-existing rows
	byKey   [][]int32              // per phase: the indexes into phaseRows(k) in uri order, for the COPY
	ops     []pairOp               // the ops cut
}

// lastWithPair reports whether op (one of the ops cut) is the last create with its pair.
func (pl *phasePlan) lastWithPair(op *pairOp) bool {
	t := pl.pairs[op.key]
	return t != nil && t.last >= 0 && &pl.ops[t.last] == op
}

// needsRecut reports whether the pre-existing pairs in existing can change a cut made without
// them. cutPhases uses a pre-existing pair only to ask whether a create of the current phase
// has it, so a cut made without them stands unless one of them is some create's pair.
func (pl *phasePlan) needsRecut(existing map[string]pairKey) bool {
	for _, k := range existing {
		if t, ok := pl.pairs[k]; ok && t.last >= 0 {
			return true
		}
	}
	return false
}

// lookupURIs returns the uris whose pre-existing pair cutPhases needs: those deleted after some
// create of the table, before any earlier delete of the same uri in the unit.
func lookupURIs(ops []pairOp) []string {
	var out []string
	seenCreate := false
	deleted := map[string]bool{}
	for i := range ops {
		op := &ops[i]
		if !op.del {
			seenCreate = true
			continue
		}
		if seenCreate && !deleted[op.uri] {
			out = append(out, op.uri)
		}
		deleted[op.uri] = true
	}
	return out
}

// uriTrack is what cutPhases knows of a uri; pairTrack of a pair. A track counts the live
// creates of the current phase at its uri or with its pair (inPhase, valid while phase is the
// current one, so that a cut resets every count at once).
type uriTrack struct {
	cands      []*pairTrack // pairs the row at this uri may have now
	lastTouch  int          // index of the last op at this uri
	lastCreate int          // index into creates of the last create at this uri since its last delete, or -1
	phase      int
	inPhase    int
}

type pairTrack struct {
	last    int // index of the last create with this pair, or -1
	phase   int
	inPhase int
}

type createRec struct {
	idx     int // op index
	phase   int
	live    bool
	prevLen int        // len(cands) before this create
	pair    *pairTrack // the create's pair
}

// cutPhases splits ops (in seq order) into phases; existing holds the pairs of pre-existing rows
// at the uris lookupURIs returned.
func cutPhases(ops []pairOp, existing map[string]pairKey) phasePlan {
	pl := phasePlan{deletes: [][]string{nil}, ordered: []bool{false}}
	phase := 0
	creates := make([]createRec, 0, len(ops))
	uris := make(map[string]*uriTrack, len(ops))
	tracks := make([]uriTrack, 0, len(ops)) // backing store of uris' values: one allocation
	pairs := make(map[pairKey]*pairTrack, len(ops))
	// Backing store of pairs' values; tracks point into it, so it never grows in place: one
	// allocation for at most a pair per op and per pre-existing row.
	pairStore := make([]pairTrack, 0, len(ops)+len(existing))
	pairOf := func(k pairKey) *pairTrack {
		t := pairs[k]
		if t == nil {
			if len(pairStore) == cap(pairStore) {
				pairStore = make([]pairTrack, 0, 16)
			}
			pairStore = append(pairStore, pairTrack{last: -1, phase: -1})
			t = &pairStore[len(pairStore)-1]
			pairs[k] = t
		}
		return t
	}
	count := func(phaseOf, inPhase *int, d int) {
		if *phaseOf != phase {
			*phaseOf, *inPhase = phase, 0
		}
		*inPhase += d
	}

	for i := range ops {
		op := &ops[i]
		st := uris[op.uri]
		if st == nil {
			tracks = append(tracks, uriTrack{lastCreate: -1, lastTouch: -1, phase: -1})
			st = &tracks[len(tracks)-1]
			if k, ok := existing[op.uri]; ok {
				st.cands = []*pairTrack{pairOf(k)}
			}
			uris[op.uri] = st
		}
		if op.del {
			if st.lastCreate >= 0 {
				c := &creates[st.lastCreate]
				if c.live && st.lastTouch == c.idx && c.pair.last == c.idx {
					c.live = false
					if c.phase == phase {
						count(&st.phase, &st.inPhase, -1)
						count(&c.pair.phase, &c.pair.inPhase, -1)
					}
					st.cands = st.cands[:c.prevLen]
				}
			}
			cut := st.phase == phase && st.inPhase > 0
			for _, t := range st.cands {
				if t.phase == phase && t.inPhase > 0 {
					cut = true
					break
				}
			}
			if cut {
				phase++
				pl.deletes = append(pl.deletes, nil)
				pl.ordered = append(pl.ordered, false)
			}
			pl.deletes[phase] = append(pl.deletes[phase], op.uri)
			st.cands = st.cands[:0]
			st.lastCreate = -1
			st.lastTouch = i
			continue
		}
		pt := pairOf(op.key)
		if (st.phase == phase && st.inPhase > 0) || (pt.phase == phase && pt.inPhase > 0) {
			pl.ordered[phase] = true
		}
		creates = append(creates, createRec{idx: i, phase: phase, live: true, prevLen: len(st.cands), pair: pt})
		count(&st.phase, &st.inPhase, 1)
		count(&pt.phase, &pt.inPhase, 1)
		st.cands = append(st.cands, pt)
		st.lastCreate = len(creates) - 1
		st.lastTouch = i
		pt.last = i
	}
	for _, c := range creates {
		if c.live {
			pl.rows = append(pl.rows, phasedRow{phase: int32(c.phase), op: &ops[c.idx]})
		}
	}
	pl.phases = phase + 1
	pl.pairs = pairs
	pl.ops = ops
	pl.byKey = make([][]int32, pl.phases)
	for k := range pl.phases {
		rows := pl.phaseRows(k)
		pl.byKey[k] = uriOrder(len(rows), func(i int) string { return rows[i].op.uri })
	}
	return pl
}

// uriOrder returns the indexes 0..n-1 sorted by uri(i). Most comparisons of at:// uris of
// did:plc repositories are settled by the eight characters of the did after its 13-byte
// "at://did:plc:" prefix, compared as one integer, in a slice that needs no pointer chasing.
func uriOrder(n int, uri func(i int) string) []int32 {
	const prefix = "at://did:plc:"
	type entry struct {
		head uint64 // the eight bytes after prefix, big-endian; 0 for other uris, which sort first
		i    int32
	}
	es := make([]entry, n)
	for i := range es {
		es[i].i = int32(i)
		if u := uri(i); len(u) >= len(prefix)+8 && u[:len(prefix)] == prefix {
			for _, c := range []byte(u[len(prefix) : len(prefix)+8]) {
				es[i].head = es[i].head<<8 | uint64(c)
			}
		}
	}
	slices.SortFunc(es, func(a, b entry) int {
		if c := cmp.Compare(a.head, b.head); c != 0 {
			return c
		}
		return strings.Compare(uri(int(a.i)), uri(int(b.i)))
	})
	out := make([]int32, n)
	for i, e := range es {
		out[i] = e.i
	}
	return out
}
