package loader

import (
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
	pairs   map[pairKey]int // the pair of every create (dropped or not)
	byKey   [][]int32       // per phase: the indexes into phaseRows(k) in uri order, for the COPY
}

// needsRecut reports whether the pre-existing pairs in existing can change a cut made without
// them. cutPhases uses a pre-existing pair only to ask whether a create of the current phase
// has it, so a cut made without them stands unless one of them is some create's pair.
func (pl *phasePlan) needsRecut(existing map[string]pairKey) bool {
	for _, k := range existing {
		if _, ok := pl.pairs[k]; ok {
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

type uriTrack struct {
	cands      []pairKey // pairs the row at this uri may have now
	lastTouch  int       // index of the last op at this uri
	lastCreate int       // index into creates of the last create at this uri since its last delete, or -1
}

type createRec struct {
	idx     int // op index
	phase   int
	live    bool
	prevLen int // len(cands) before this create
}

// cutPhases splits ops (in seq order) into phases; existing holds the pairs of pre-existing rows
// at the uris lookupURIs returned.
func cutPhases(ops []pairOp, existing map[string]pairKey) phasePlan {
	pl := phasePlan{deletes: [][]string{nil}, ordered: []bool{false}}
	phase := 0
	creates := make([]createRec, 0, len(ops))
	uris := make(map[string]*uriTrack, len(ops))
	tracks := make([]uriTrack, 0, len(ops)) // backing store of uris' values: one allocation
	lastPair := make(map[pairKey]int, len(ops))
	phaseURI := map[string]int{}
	phasePair := map[pairKey]int{}

	for i := range ops {
		op := &ops[i]
		st := uris[op.uri]
		if st == nil {
			tracks = append(tracks, uriTrack{lastCreate: -1, lastTouch: -1})
			st = &tracks[len(tracks)-1]
			if k, ok := existing[op.uri]; ok {
				st.cands = []pairKey{k}
			}
			uris[op.uri] = st
		}
		if op.del {
			if st.lastCreate >= 0 {
				c := &creates[st.lastCreate]
				cop := &ops[c.idx]
				if c.live && st.lastTouch == c.idx && lastPair[cop.key] == c.idx {
					c.live = false
					if c.phase == phase {
						phaseURI[cop.uri]--
						phasePair[cop.key]--
					}
					st.cands = st.cands[:c.prevLen]
				}
			}
			cut := phaseURI[op.uri] > 0
			for _, k := range st.cands {
				if phasePair[k] > 0 {
					cut = true
					break
				}
			}
			if cut {
				phase++
				clear(phaseURI)
				clear(phasePair)
				pl.deletes = append(pl.deletes, nil)
				pl.ordered = append(pl.ordered, false)
			}
			pl.deletes[phase] = append(pl.deletes[phase], op.uri)
			st.cands = st.cands[:0]
			st.lastCreate = -1
			st.lastTouch = i
			continue
		}
		if phaseURI[op.uri] > 0 || phasePair[op.key] > 0 {
			pl.ordered[phase] = true
		}
		creates = append(creates, createRec{idx: i, phase: phase, live: true, prevLen: len(st.cands)})
		phaseURI[op.uri]++
		phasePair[op.key]++
		st.cands = append(st.cands, op.key)
		st.lastCreate = len(creates) - 1
		st.lastTouch = i
		lastPair[op.key] = i
	}
	for _, c := range creates {
		if c.live {
			pl.rows = append(pl.rows, phasedRow{phase: int32(c.phase), op: &ops[c.idx]})
		}
	}
	pl.phases = phase + 1
	pl.pairs = lastPair
	pl.byKey = make([][]int32, pl.phases)
	for k := range pl.phases {
		rows := pl.phaseRows(k)
		order := make([]int32, len(rows))
		for i := range order {
			order[i] = int32(i)
		}
		slices.SortFunc(order, func(i, j int32) int { return strings.Compare(rows[i].op.uri, rows[j].op.uri) })
		pl.byKey[k] = order
	}
	return pl
}
