package loader

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// memTable is a pair table in memory with the database's rules: unique uri, unique pair.
type memTable struct {
	byURI  map[string]pairKey
	byPair map[pairKey]string
}

func newMemTable(rows map[string]pairKey) *memTable {
	m := &memTable{byURI: map[string]pairKey{}, byPair: map[pairKey]string{}}
	for u, k := range rows {
		m.create(u, k)
	}
	return m
}

// create inserts unless the uri or the pair exists (ON CONFLICT DO NOTHING).
func (m *memTable) create(uri string, k pairKey) {
	if _, ok := m.byURI[uri]; ok {
		return
	}
	if _, ok := m.byPair[k]; ok {
		return
	}
	m.byURI[uri], m.byPair[k] = k, uri
}

func (m *memTable) del(uri string) {
	if k, ok := m.byURI[uri]; ok {
		delete(m.byURI, uri)
		delete(m.byPair, k)
	}
}

// sequential applies ops one at a time.
func sequential(initial map[string]pairKey, ops []pairOp) map[string]pairKey {
	m := newMemTable(initial)
	for _, op := range ops {
		if op.del {
			m.del(op.uri)
		} else {
			m.create(op.uri, op.key)
		}
	}
	return m.byURI
}

// phased applies ops the way the loader does: per phase, the deletes, then the creates in pos
// order, or in a shuffled order when the plan says order does not matter.
func phased(initial map[string]pairKey, ops []pairOp, rng *rand.Rand) (map[string]pairKey, phasePlan) {
	existing := map[string]pairKey{}
	for _, u := range lookupURIs(ops) {
		if k, ok := initial[u]; ok {
			existing[u] = k
		}
	}
	pl := cutPhases(ops, existing)
	m := newMemTable(initial)
	for k := 0; k < pl.phases; k++ {
		for _, u := range pl.deletes[k] {
			m.del(u)
		}
		var rows []phasedRow
		for _, r := range pl.rows {
			if int(r.phase) == k {
				rows = append(rows, r)
			}
		}
		if !pl.ordered[k] {
			rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		}
		for _, r := range rows {
			m.create(r.op.uri, r.op.key)
		}
	}
	return m.byURI, pl
}

// randomOps returns a random initial table and op sequence over a small key space.
func randomOps(rng *rand.Rand, n int) (map[string]pairKey, []pairOp) {
	uri := func() string { return fmt.Sprintf("u%d", rng.IntN(5)) }
	key := func() pairKey { return pairKey{fmt.Sprintf("a%d", rng.IntN(2)), fmt.Sprintf("b%d", rng.IntN(2))} }
	initial := newMemTable(nil)
	for range rng.IntN(4) {
		initial.create(uri(), key())
	}
	var ops []pairOp
	for pos := range int64(n) {
		switch rng.IntN(3) {
		case 0:
			ops = append(ops, pairOp{pos: pos, del: true, uri: uri()})
		case 1:
			ops = append(ops, pairOp{pos: pos, uri: uri(), key: key()})
		default: // update
			u := uri()
			ops = append(ops, pairOp{pos: pos, del: true, uri: u}, pairOp{pos: pos, uri: u, key: key()})
		}
	}
	return initial.byURI, ops
}

func TestCutPhases(t *testing.T) {
	t.Parallel()
	t.Run("random sequences equal sequential application", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		phases, ops := 0, 0
		for i := range 20000 {
			initial, seq := randomOps(rng, 1+rng.IntN(12))
			want := sequential(initial, seq)
			got, pl := phased(initial, seq, rng)
			if !maps.Equal(got, want) {
				t.Fatalf("case %d: initial %v ops %+v\nphases %+v\n got %v\nwant %v", i, initial, seq, pl, got, want)
			}
			phases += pl.phases
			ops += len(seq)
		}
		t.Logf("%d ops in %d phases", ops, phases)
	})
	t.Run("like then unlike does not cut", func(t *testing.T) {
		k := pairKey{"alice", "post1"}
		ops := []pairOp{
			{pos: 1, uri: "l1", key: k},
			{pos: 2, uri: "l2", key: pairKey{"bob", "post1"}},
			{pos: 3, del: true, uri: "l1"},
			{pos: 4, uri: "l3", key: k},
		}
		pl := cutPhases(ops, nil)
		if pl.phases != 1 {
			t.Errorf("phases = %d, want 1", pl.phases)
		}
		var uris []string
		for _, r := range pl.rows {
			uris = append(uris, r.op.uri)
		}
		if want := []string{"l2", "l3"}; !slices.Equal(uris, want) {
			t.Errorf("rows = %v, want %v", uris, want)
		}
	})
	t.Run("delete of a pre-existing row whose pair a create took cuts", func(t *testing.T) {
		k := pairKey{"alice", "post1"}
		ops := []pairOp{{pos: 1, uri: "l2", key: k}, {pos: 2, del: true, uri: "l1"}}
		if got := lookupURIs(ops); !slices.Equal(got, []string{"l1"}) {
			t.Fatalf("lookupURIs = %v, want [l1]", got)
		}
		if pl := cutPhases(ops, map[string]pairKey{"l1": k}); pl.phases != 2 {
			t.Errorf("phases = %d, want 2", pl.phases)
		}
		if pl := cutPhases(ops, nil); pl.phases != 1 {
			t.Errorf("phases without a pre-existing row = %d, want 1", pl.phases)
		}
	})
}

// FuzzCutPhases checks set-based phases against sequential application for op sequences
// derived from the input.
func FuzzCutPhases(f *testing.F) {
	f.Add([]byte{0x10, 0x21, 0x32, 0x03, 0x14})
	f.Add([]byte{0x11, 0x11, 0x01, 0x25, 0x05})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64 {
			data = data[:64]
		}
		initial := newMemTable(nil)
		var ops []pairOp
		for i, b := range data {
			u := fmt.Sprintf("u%d", b&3)
			k := pairKey{fmt.Sprintf("a%d", (b>>2)&1), fmt.Sprintf("b%d", (b>>3)&1)}
			switch b >> 4 & 3 {
			case 0:
				initial.create(u, k)
			case 1:
				ops = append(ops, pairOp{pos: int64(i), uri: u, key: k})
			case 2:
				ops = append(ops, pairOp{pos: int64(i), del: true, uri: u})
			case 3:
				ops = append(ops, pairOp{pos: int64(i), del: true, uri: u}, pairOp{pos: int64(i), uri: u, key: k})
			}
		}
		want := sequential(initial.byURI, ops)
		got, pl := phased(initial.byURI, ops, rand.New(rand.NewPCG(uint64(len(data)), 7)))
		if !maps.Equal(got, want) {
			t.Fatalf("initial %v ops %+v\nphases %+v\n got %v\nwant %v", initial.byURI, ops, pl, got, want)
		}
	})
}

// TestURIOrder checks uriOrder against a plain sort: uris of did:plc repositories in string
// order, after the others (in string order among themselves).
func TestURIOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	str := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	dids := []string{"did:web:example.com", "did:plc:" + str(3), "did:plc:" + str(5)}
	for range 20 {
		dids = append(dids, "did:plc:"+str(24))
	}
	dids = append(dids, "did:plc:"+dids[5][8:16]+str(16)) // same first eight characters as another
	var uris []string
	for range 2000 {
		uris = append(uris, "at://"+dids[rng.IntN(len(dids))]+"/app.bsky.feed.like/"+str(13))
	}
	uris = append(uris, "at://did:plc:", "", "at://did:plc:"+dids[5][8:16])
	got := uriOrder(len(uris), func(i int) string { return uris[i] })
	sorted := make([]string, len(got))
	for j, i := range got {
		sorted[j] = uris[i]
	}
	want := slices.Clone(uris)
	plc := func(u string) bool { return strings.HasPrefix(u, "at://did:plc:") && len(u) >= len("at://did:plc:")+8 }
	slices.SortFunc(want, func(a, b string) int {
		if plc(a) != plc(b) {
			if plc(a) {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	if !slices.Equal(sorted, want) {
		for i := range want {
			if sorted[i] != want[i] {
				t.Fatalf("position %d: %q, want %q", i, sorted[i], want[i])
			}
		}
	}
}

// BenchmarkCutPhases cuts a unit's worth of likes: 100k creates of distinct uris and mostly
// distinct pairs, a tenth of them deleted again later in the unit.
func BenchmarkCutPhases(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 100_000
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	dids := make([]string, 5000)
	for i := range dids {
		b := []byte("did:plc:")
		for range 24 {
			b = append(b, alphabet[rng.IntN(len(alphabet))])
		}
		dids[i] = string(b)
	}
	did := func() string { return dids[rng.IntN(len(dids))] }
	// tid is a record key as repositories make them: microseconds since 1970, then a clock id,
	// in base32-sortable characters.
	tid := func(us int64) string {
		const sortable = "234567abcdefghijklmnopqrstuvwxyz"
		v := uint64(us)<<10 | uint64(rng.IntN(1024))
		b := make([]byte, 13)
		for i := 12; i >= 0; i-- {
			b[i] = sortable[v&31]
			v >>= 5
		}
		return string(b)
	}
	start := int64(1_767_225_600_000_000) // 2026-01-01, in microseconds
	var ops []pairOp
	for i := range n {
		repo := did()
		uri := "at://" + repo + "/app.bsky.feed.like/" + tid(start+int64(i)*1000)
		ops = append(ops, pairOp{pos: int64(len(ops)), uri: uri, key: pairKey{repo, "at://" + did() + "/app.bsky.feed.post/" + tid(start-int64(rng.IntN(n))*1000)}})
		if rng.IntN(10) == 0 {
			j := rng.IntN(len(ops))
			if !ops[j].del {
				ops = append(ops, pairOp{pos: int64(len(ops)), del: true, uri: ops[j].uri})
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		cutPhases(ops, nil)
	}
	b.ReportMetric(float64(len(ops))*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
