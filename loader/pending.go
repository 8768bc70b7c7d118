package loader

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pending rows: the pair-table creates left out because a later delete removes them (hints.go).
//
// Unlike a post, a like, repost, follow or block takes a second unique key, its pair: while the
// row sequential application would hold at uri u is there, creates of the same pair by other
// uris do nothing. So a left-out pair create is remembered, with its row, until a delete of u
// comes: in memory for the writer and in backfill_pending, in the transaction that left it out,
// so that a restart knows it too. The planner marks the creates a later delete dooms; the
// writer leaves one out only when sequential application inserts it (its uri and pair free in
// the table, which it probes for, and not taken by an earlier create of its phase: target.kept),
// and only when no later create of the unit has its pair, so nothing later in the unit meets it.
//
// A unit with a create whose uri or pair a pending row has first writes the pending row into
// its table (materializes it), in its first statements: the row exists at that point of
// sequential application (nothing deleted its uri since, or it would not be pending), so the
// unit then runs exactly as it would have. A delete of a pending row's uri ends it: that delete
// finds no row, as the row was never written. Every left-out row thus ends written or deleted,
// and the tables after its delete are those of sequential application.

// pendingMax bounds the pending rows (some 300 bytes each): past it, doomed pair creates are
// written like the others.
const pendingMax = 1 << 17

// pendingSet is the pending rows of each pair table, by uri and by pair. The writer's goroutine
// owns it.
type pendingSet struct {
	uris  [numPairTables]map[string]*pairOp
	pairs [numPairTables]map[pairKey]*pairOp
	n     int
	// hashes counts the pending rows by uri hash and by pair hash (seen.go: they differ by
	// table and kind): touch looks a unit's ops up by hash, and by key only when one is there.
	hashes map[keyHash]int32
}

// full reports whether the set holds pendingMax rows.
func (s *pendingSet) full() bool { return s == nil || s.n >= pendingMax }

func (s *pendingSet) add(i int, op pairOp) {
	if s.uris[i] == nil {
		s.uris[i], s.pairs[i] = map[string]*pairOp{}, map[pairKey]*pairOp{}
	}
	if s.hashes == nil {
		s.hashes = map[keyHash]int32{}
	}
	if old := s.uris[i][op.uri]; old != nil {
		s.remove(i, old.uri)
	}
	p := &op
	s.uris[i][op.uri], s.pairs[i][op.key] = p, p
	s.hashes[op.uh]++
	s.hashes[op.ph]++
	s.n++
}

// unhash takes a pending row's hash out of s.hashes.
func (s *pendingSet) unhash(h keyHash) {
	if s.hashes[h]--; s.hashes[h] <= 0 {
		delete(s.hashes, h)
	}
}

func (s *pendingSet) remove(i int, uri string) {
	p := s.uris[i][uri]
	if p == nil {
		return
	}
	delete(s.uris[i], uri)
	if s.pairs[i][p.key] == p {
		delete(s.pairs[i], p.key)
	}
	s.unhash(p.uh)
	s.unhash(p.ph)
	s.n--
}

// pendingChange is what a unit does to the pending rows.
type pendingChange struct {
	materialize [numPairTables][]*pairOp // written into their table by the unit, then no longer pending
	ended       [numPairTables][]string  // uris the unit deletes: no longer pending
	added       [numPairTables][]pairOp  // left out by the unit
	gone        [numPairTables]map[string]bool
}

// touch works out which pending rows a unit materializes (a create of the unit has the uri or
// pair of one) and which it ends (it deletes the uri of one).
func (s *pendingSet) touch(p *unitPlan) *pendingChange {
	if s == nil || s.n == 0 {
		return nil
	}
	var ch pendingChange
	touched := false
	for i := range p.pairs {
		if len(s.uris[i]) == 0 {
			continue
		}
		done := map[*pairOp]bool{}
		for j := range p.pairs[i] {
			op := &p.pairs[i][j]
			if s.hashes[op.uh] == 0 && (op.del || s.hashes[op.ph] == 0) {
				continue // neither its uri nor its pair is pending
			}
			if op.del {
				if r := s.uris[i][op.uri]; r != nil && !done[r] {
					done[r] = true
					ch.ended[i] = append(ch.ended[i], r.uri)
					touched = true
				}
				continue
			}
			for _, r := range [2]*pairOp{s.uris[i][op.uri], s.pairs[i][op.key]} {
				if r != nil && !done[r] {
					done[r] = true
					ch.materialize[i] = append(ch.materialize[i], r)
					touched = true
				}
			}
		}
	}
	if !touched {
		return nil
	}
	return &ch
}

// unwritten returns deletes (a pair table's first phase's, which come before any create of
// the unit) without the uris of the pending rows the unit ends: their rows were never written.
func (ch *pendingChange) unwritten(i int, deletes []string) []string {
	if len(ch.ended[i]) == 0 {
		return deletes
	}
	if ch.gone[i] == nil {
		ch.gone[i] = make(map[string]bool, len(ch.ended[i]))
		for _, uri := range ch.ended[i] {
			ch.gone[i][uri] = true
		}
	}
	out := make([]string, 0, len(deletes))
	for _, uri := range deletes {
		if !ch.gone[i][uri] {
			out = append(out, uri)
		}
	}
	return out
}

// apply records a committed unit's change.
func (s *pendingSet) apply(ch *pendingChange) {
	if s == nil || ch == nil {
		return
	}
	for i := range ch.added {
		for _, r := range ch.materialize[i] {
			s.remove(i, r.uri)
		}
		for _, uri := range ch.ended[i] {
			s.remove(i, uri)
		}
		for _, op := range ch.added[i] {
			s.add(i, op)
		}
	}
}

// queueMaterialize queues the inserts of the pending rows ch materializes: before anything
// else of the unit reads or writes the pair tables.
func (ch *pendingChange) queueMaterialize(tp *txPipe, rows *[NumTables]RowCount) {
	if ch == nil {
		return
	}
	for i, list := range ch.materialize {
		if len(list) == 0 {
			continue
		}
		tab := TableLikes + Table(i)
		uris, as, bs := make([]string, len(list)), make([]string, len(list)), make([]string, len(list))
		cs, xs := make([]time.Time, len(list)), make([]time.Time, len(list))
		for j, r := range list {
			uris[j], as[j], bs[j], cs[j], xs[j] = r.uri, r.key.a, r.key.b, r.created, r.indexed
		}
		tp.queueCount(&rows[tab].Inserted, fmt.Sprintf(`INSERT INTO %s (uri, %s, %s, created_at, indexed_at) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamp[], $5::timestamp[]) ON CONFLICT DO NOTHING`,
			tab, pairColumns[i][0], pairColumns[i][1]), uris, as, bs, cs, xs)
	}
}

// pendingCompact is how many log rows backfill_pending holds before a unit replaces them by
// one row with the whole set.
const pendingCompact = 64

// queueRecord queues the unit's change of backfill_pending, in its last batch: one row that
// logs it (a few bytes per pending row; a table of rows would cost index work on the server for
// each, nearly what leaving them out saves), or, every pendingCompact units, the whole set
// after it in place of the log.
func (ch *pendingChange) queueRecord(tp *txPipe, s *pendingSet, logRows, compact int) (rows int) {
	if ch.empty() {
		return logRows
	}
	if logRows+1 < compact {
		tp.queue(`INSERT INTO backfill_pending (delta) VALUES ($1)`, ch.encode(nil))
		return logRows + 1
	}
	tp.queue(`DELETE FROM backfill_pending`)
	tp.queue(`INSERT INTO backfill_pending (delta) VALUES ($1)`, s.encodeAfter(ch))
	return 1
}

// Log records: a byte of kind and one of the pair table's index, then for an end the uri, and
// for an add the uri, the pair and the two times (unix microseconds); strings are prefixed
// with their length as a uvarint, times are varints.
const (
	pendingEnd byte = 1
	pendingAdd byte = 2
)

func (ch *pendingChange) encode(b []byte) []byte {
	b = append(b, 1) // version
	for i := range ch.added {
		for _, r := range ch.materialize[i] {
			b = appendEnd(b, i, r.uri)
		}
		for _, uri := range ch.ended[i] {
			b = appendEnd(b, i, uri)
		}
		for j := range ch.added[i] {
			b = appendAdd(b, i, &ch.added[i][j])
		}
	}
	return b
}

// encodeAfter encodes the set as it is once ch applies, as one log record of adds.
func (s *pendingSet) encodeAfter(ch *pendingChange) []byte {
	b := []byte{1}
	for i := range ch.added {
		gone := map[string]bool{}
		for _, r := range ch.materialize[i] {
			gone[r.uri] = true
		}
		for _, uri := range ch.ended[i] {
			gone[uri] = true
		}
		for j := range ch.added[i] {
			gone[ch.added[i][j].uri] = true
		}
		if s != nil {
			for uri, r := range s.uris[i] {
				if !gone[uri] {
					b = appendAdd(b, i, r)
				}
			}
		}
		for j := range ch.added[i] {
			b = appendAdd(b, i, &ch.added[i][j])
		}
	}
	return b
}

func appendEnd(b []byte, i int, uri string) []byte {
	b = append(b, pendingEnd, byte(i))
	return appendString(b, uri)
}

func appendAdd(b []byte, i int, r *pairOp) []byte {
	b = append(b, pendingAdd, byte(i))
	b = appendString(b, r.uri)
	b = appendString(b, r.key.a)
	b = appendString(b, r.key.b)
	b = binary.AppendVarint(b, r.created.UnixMicro())
	return binary.AppendVarint(b, r.indexed.UnixMicro())
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeLog applies one log record of backfill_pending to s.
func (s *pendingSet) decodeLog(b []byte) error {
	if len(b) == 0 || b[0] != 1 {
		return errors.New("unknown version")
	}
	b = b[1:]
	str := func() (string, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", errors.New("bad string")
		}
		v := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return v, nil
	}
	micro := func() (time.Time, error) {
		v, k := binary.Varint(b)
		if k <= 0 {
			return time.Time{}, errors.New("bad time")
		}
		b = b[k:]
		return time.UnixMicro(v).UTC(), nil
	}
	for len(b) > 0 {
		if len(b) < 2 || b[1] >= numPairTables {
			return errors.New("bad record head")
		}
		kind, i := b[0], int(b[1])
		b = b[2:]
		uri, err := str()
		if err != nil {
			return err
		}
		switch kind {
		case pendingEnd:
			s.remove(i, uri)
		case pendingAdd:
			op := pairOp{uri: uri}
			if op.key.a, err = str(); err != nil {
				return err
			}
			if op.key.b, err = str(); err != nil {
				return err
			}
			if op.created, err = micro(); err != nil {
				return err
			}
			if op.indexed, err = micro(); err != nil {
				return err
			}
			t := TableLikes + Table(i)
			op.uh, op.ph = uriHash(t, op.uri), pairHash(t, op.key)
			s.add(i, op)
		default:
			return fmt.Errorf("record kind %d", kind)
		}
	}
	return nil
}

func (ch *pendingChange) empty() bool {
	if ch == nil {
		return true
	}
	for i := range ch.added {
		if len(ch.materialize[i])+len(ch.ended[i])+len(ch.added[i]) > 0 {
			return false
		}
	}
	return true
}

// readPending reads the pending rows from backfill_pending's log, and how many rows it has.
func readPending(ctx context.Context, conn *pgx.Conn) (*pendingSet, int, error) {
	rows, err := conn.Query(ctx, `SELECT id, delta FROM backfill_pending ORDER BY id`)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	s := &pendingSet{}
	n := 0
	for rows.Next() {
		var id int64
		var b []byte
		if err := rows.Scan(&id, &b); err != nil {
			return nil, 0, err
		}
		if err := s.decodeLog(b); err != nil {
			return nil, 0, fmt.Errorf("loader: backfill_pending row %d: %w", id, err)
		}
		n++
	}
	return s, n, rows.Err()
}
