package loader

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// txPipe runs one transaction on a connection with as few round trips as it can: queued
// statements go out in one batch (BEGIN with the first, COMMIT with the last), and a direct
// COPY carries its savepoint statements in its own query.
//
// Savepoints: backfill_cut_N (N a pair table's index), when taken, is where that table's deletes
// sent before its phase cuts were final (and the deletes sent after them) can be undone; they
// nest, the first taken holds the others; backfill_direct is taken just before each direct COPY
// (inside the cut savepoints), and released by the next one or at the end.
type txPipe struct {
	conn      *pgx.Conn
	b         *pgx.Batch
	copies    int  // direct COPYs attempted in this transaction
	cutFirst  int  // the first backfill_cut_N queued or taken, or -1
	direct    bool // backfill_direct is taken
	counting  bool // a queued statement counts rows into the unit's result
	probing   bool // a probe of a direct COPY's keys is queued
	copyQuery strings.Builder
}

// newTxPipe queues BEGIN on conn.
func newTxPipe(conn *pgx.Conn) *txPipe {
	p := &txPipe{conn: conn, cutFirst: -1}
	// Read committed whatever the session's default: a unit's statements must see what the
	// units before it committed meanwhile (head.go).
	p.queue(`BEGIN ISOLATION LEVEL READ COMMITTED`)
	return p
}

// queue adds a statement to the next batch.
func (p *txPipe) queue(sql string, args ...any) *pgx.QueuedQuery {
	if p.b == nil {
		p.b = &pgx.Batch{}
	}
	return p.b.Queue(sql, args...)
}

// queueCount adds a statement whose affected rows are added to c.
func (p *txPipe) queueCount(c *int64, sql string, args ...any) {
	p.counting = true
	p.queue(sql, args...).Exec(func(ct pgconn.CommandTag) error {
		*c += ct.RowsAffected()
		return nil
	})
}

// flush sends the queued statements and reads their results.
func (p *txPipe) flush(ctx context.Context) error { return p.flushWith(ctx, nil) }

// flushWith is flush that runs during, when not nil, while the server runs the statements
// (at once when none are queued). Statements during queues go in the next batch.
func (p *txPipe) flushWith(ctx context.Context, during func()) error {
	if p.b == nil || p.b.Len() == 0 {
		if during != nil {
			during()
		}
		return nil
	}
	b := p.b
	p.b, p.counting, p.probing = nil, false, false
	br := p.conn.SendBatch(ctx, b) // sends them all before it returns
	if during != nil {
		during()
	}
	return br.Close()
}

// rollback ends the transaction when it is still open; it reports false when the connection is
// in an unknown state and must be dropped.
func (p *txPipe) rollback(ctx context.Context) bool {
	if p.conn.IsClosed() {
		return false
	}
	if p.conn.PgConn().TxStatus() == 'I' {
		return true
	}
	_, err := p.conn.Exec(ctx, `ROLLBACK`)
	return err == nil
}

// copyRows COPYs n rows into table after the queued statements; row encodes row i.
func (p *txPipe) copyRows(ctx context.Context, table string, cols []string, n int, row func(i int, r *copyRow)) (int64, error) {
	if n == 0 {
		return 0, nil
	}
	if err := p.flush(ctx); err != nil {
		return 0, fmt.Errorf("apply statements: %w", err)
	}
	q := &p.copyQuery
	q.Reset()
	q.WriteString("COPY ")
	q.WriteString(table)
	q.WriteString(" (")
	q.WriteString(strings.Join(cols, ", "))
	q.WriteString(") FROM STDIN BINARY")
	ct, err := p.conn.PgConn().CopyFrom(ctx, newCopySource(n, row), q.String())
	if err != nil {
		return 0, fmt.Errorf("copy into %s: %w", table, err)
	}
	return ct.RowsAffected(), nil
}

// savepointCut queues the savepoint that undoes pair table i's deletes sent before its cuts
// were final, and every statement sent after it.
func (p *txPipe) savepointCut(i int) {
	if p.cutFirst < 0 {
		p.cutFirst = i
	}
	p.queue(fmt.Sprintf(`SAVEPOINT backfill_cut_%d`, i))
}

// undoCut rolls back to backfill_cut_i.
func (p *txPipe) undoCut(ctx context.Context, i int) error {
	if _, err := p.conn.Exec(ctx, fmt.Sprintf(`ROLLBACK TO SAVEPOINT backfill_cut_%d`, i)); err != nil {
		return fmt.Errorf("undo deletes: %w", err)
	}
	return nil
}

// release queues the release of the open savepoints.
func (p *txPipe) release() {
	switch {
	case p.cutFirst >= 0:
		p.queue(fmt.Sprintf(`RELEASE SAVEPOINT backfill_cut_%d`, p.cutFirst)) // and those taken inside it
	case p.direct:
		p.queue(`RELEASE SAVEPOINT backfill_direct`)
	}
	p.cutFirst, p.direct = -1, false
}

// directCopy is one COPY straight into a target table.
type directCopy struct {
	table string
	cols  []string
	n     int
	row   func(i int, r *copyRow)
	ok    bool  // the COPY ran and was kept
	rows  int64 // rows it inserted
}

// copyDirectAll runs the COPYs of list in order, after the queued statements, each straight
// into its table inside its own savepoint. A COPY whose rows meet an existing unique key is
// undone and left not ok; any other error is returned as is. The COPYs go out as one query
// (savepoint statements and COPYs, then each COPY's data and end), one round trip for all of
// them, or one more after each COPY that is undone.
func (p *txPipe) copyDirectAll(ctx context.Context, list []*directCopy) error {
	if err := p.flush(ctx); err != nil {
		return fmt.Errorf("apply statements: %w", err)
	}
	for len(list) > 0 {
		p.copies += len(list)
		failed, err := p.multiCopy(ctx, list)
		if err != nil {
			return err
		}
		if failed < 0 {
			return nil
		}
		// The transaction is aborted until the rollback, which must go alone: a batch has its
		// statements parsed before it runs them, and an aborted transaction refuses that.
		if _, err := p.conn.Exec(ctx, `ROLLBACK TO SAVEPOINT backfill_direct`); err != nil {
			return fmt.Errorf("roll back copy into %s: %w", list[failed].table, err)
		}
		list = list[failed+1:]
	}
	return nil
}

// copyDone is an encoded CopyDone message.
var copyDone = []byte{'c', 0, 0, 0, 4}

// multiCopy sends the COPYs of list as one simple query and streams their data, the way
// pgconn.CopyFrom streams one COPY's: a goroutine writes while this one reads the server's
// messages, so neither side can block the other. It returns the index of the COPY that met
// an existing key (the server ran nothing after it), or -1 when all of them ran.
func (p *txPipe) multiCopy(ctx context.Context, list []*directCopy) (failed int, err error) {
	q := &p.copyQuery
	q.Reset()
	for i, c := range list {
		if p.direct || i > 0 {
			q.WriteString("RELEASE SAVEPOINT backfill_direct; ")
		}
		q.WriteString("SAVEPOINT backfill_direct; COPY ")
		q.WriteString(c.table)
		q.WriteString(" (")
		q.WriteString(strings.Join(c.cols, ", "))
		q.WriteString(") FROM STDIN BINARY; ")
	}
	pc := p.conn.PgConn()
	fe := pc.Frontend()
	broken := func(err error) error {
		// Where the conversation stands is unknown: the connection is done for.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = p.conn.Close(cctx)
		return fmt.Errorf("copy into %s: %w", list[0].table, err)
	}
	fe.SendQuery(&pgproto3.Query{String: q.String()})
	if err := fe.Flush(); err != nil {
		return -1, broken(err)
	}
	abort := make(chan struct{})
	written := make(chan error, 1)
	go func() {
		buf := make([]byte, copyChunk+5)
		for _, c := range list {
			src := newCopySource(c.n, c.row)
			for {
				select {
				case <-abort:
					written <- nil
					return
				default:
				}
				n, rerr := src.Read(buf[5:])
				if n > 0 {
					buf[0] = 'd'
					binary.BigEndian.PutUint32(buf[1:5], uint32(n+4))
					if err := fe.SendUnbufferedEncodedCopyData(buf[:n+5]); err != nil {
						written <- err
						return
					}
				}
				if rerr != nil {
					break
				}
			}
			if err := fe.SendUnbufferedEncodedCopyData(copyDone); err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()
	aborted := false
	abortWriter := func() {
		if !aborted {
			aborted = true
			close(abort)
		}
	}
	copies := 0
	var pgErr *pgconn.PgError
	for {
		msg, err := pc.ReceiveMessage(ctx)
		if err != nil {
			abortWriter()
			_ = pc.Conn().Close() // unblocks the writer
			<-written
			return -1, broken(err)
		}
		switch m := msg.(type) {
		case *pgproto3.CommandComplete:
			if tag := pgconn.NewCommandTag(string(m.CommandTag)); strings.HasPrefix(tag.String(), "COPY ") && copies < len(list) {
				list[copies].ok, list[copies].rows = true, tag.RowsAffected()
				copies++
			}
		case *pgproto3.ErrorResponse:
			// The server skips the rest of the query and ignores the data still coming.
			if pgErr == nil {
				pgErr = pgconn.ErrorResponseToPgError(m)
				abortWriter()
			}
		case *pgproto3.ReadyForQuery:
			// The server is done with the query: with it, or after an error, the writer is too
			// once it stops (it writes whole messages only, which the server ignores).
			abortWriter()
			werr := <-written
			if pgErr == nil && werr != nil {
				return -1, broken(werr)
			}
			// Each COPY follows its savepoint: one is taken, and a COPY that failed left it
			// to roll back to.
			p.direct = true
			if pgErr == nil {
				return -1, nil
			}
			if pgErr.Code == "23505" && copies < len(list) && pgErr.TableName == list[copies].table {
				return copies, nil
			}
			return -1, fmt.Errorf("copy into %s: %w", list[min(copies, len(list)-1)].table, pgErr)
		}
	}
}

// canCopyDirect reports whether one more direct COPY fits in the transaction.
func (p *txPipe) canCopyDirect() bool { return p.copies < maxDirectCopies }
