package relaytest

import (
	"bufio"
	"net"
	"net/http"
	"strconv"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/gorilla/websocket"
)

// handle serves one subscribeRepos request: replay from the cursor, then the live tail.
func (r *Relay) handle(w http.ResponseWriter, req *http.Request) {
	info := ConnInfo{}
	var cursor int64
	raw := req.URL.Query().Get("cursor")
	if raw != "" {
		c, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			r.record(ConnInfo{Status: http.StatusBadRequest})
			http.Error(w, "InvalidRequest: cursor is not an integer", http.StatusBadRequest)
			return
		}
		cursor = c
		info.Cursor = &c
	}
	if status := r.faults.takeReject(); status != 0 {
		info.Status = status
		r.record(info)
		reject(w, status)
		return
	}
	// Decide where to start before upgrading, so no event appended meanwhile is missed.
	r.mu.Lock()
	log := r.log
	r.mu.Unlock()
	start, outdated, future := len(log), false, false
	if info.Cursor != nil {
		head := r.cfg.FirstSeq - 1
		if len(log) > 0 {
			head = log[len(log)-1].Seq
		}
		switch {
		case cursor > head && r.cfg.NoFutureCursor:
			// live frames only: start stays at the end of the log
		case cursor > head:
			future = true
		default:
			start, outdated = r.index(log, cursor)
		}
	}
	var fault Fault
	if !future { // a FutureCursor connection ends before any frame: the fault waits for the next
		fault = r.faults.takeStream()
	}
	// Record before upgrading: once the client sees the handshake, Conns must include it.
	info.Status, info.Fault = http.StatusSwitchingProtocols, fault.Kind
	i := r.record(info)
	ws, err := r.upgrader.Upgrade(w, req, nil)
	if err != nil { // the upgrader has answered the request
		r.connMu.Lock()
		r.connLog[i].Status, r.connLog[i].Fault = http.StatusBadRequest, FaultNone
		r.connMu.Unlock()
		if fault.Kind != FaultNone {
			r.faults.putBack(fault)
		}
		return
	}

	nc := ws.NetConn()
	r.connMu.Lock()
	if r.ctx.Err() != nil {
		r.connMu.Unlock()
		_ = nc.Close()
		return
	}
	r.netConns[nc] = struct{}{}
	r.wg.Add(1)
	r.connMu.Unlock()
	c := &conn{relay: r, ws: ws, nc: nc, bw: bufio.NewWriterSize(nc, 256<<10), pings: make(chan []byte, 4), done: make(chan struct{})}
	defer func() {
		r.connMu.Lock()
		delete(r.netConns, nc)
		r.connMu.Unlock()
		_ = nc.Close()
		<-c.done // the reader below ends once the connection is closed
		r.wg.Done()
	}()
	// All writes go through c.bw on this goroutine; gorilla only reads. Its default ping and
	// close handlers would write on their own and could split our frames, so replace them.
	ws.SetPingHandler(func(data string) error {
		select {
		case c.pings <- []byte(data):
		default:
		}
		return nil
	})
	ws.SetCloseHandler(func(int, string) error { return nil })
	go func() {
		defer close(c.done)
		for {
			if _, _, err := ws.NextReader(); err != nil {
				return
			}
		}
	}()

	if future {
		_ = c.write(wsBinary, errorFrame("FutureCursor", "Cursor in the future."))
		c.closeFrame(websocket.ClosePolicyViolation, "FutureCursor")
		return
	}
	if outdated && !r.cfg.NoOutdatedInfo {
		if c.write(wsBinary, outdatedCursorFrame()) != nil {
			return
		}
	}
	c.run(start, fault)
}

// record appends to the connection log and returns the entry's index.
func (r *Relay) record(info ConnInfo) int {
	r.connMu.Lock()
	defer r.connMu.Unlock()
	r.connLog = append(r.connLog, info)
	return len(r.connLog) - 1
}

// conn is one upgraded subscription. Only its serving goroutine writes.
type conn struct {
	relay *Relay
	ws    *websocket.Conn
	nc    net.Conn
	bw    *bufio.Writer
	hdr   []byte
	pings chan []byte   // ping payloads to answer with pongs
	done  chan struct{} // closed when the client's side ends (read error or close frame)

	sent   int      // log frames sent
	recent [][]byte // the last frames sent, for repeat and backwards faults
}

// write buffers one websocket message.
func (c *conn) write(opcode byte, payload []byte) error {
	c.hdr = appendWSHeader(c.hdr[:0], opcode, len(payload))
	if _, err := c.bw.Write(c.hdr); err != nil {
		return err
	}
	_, err := c.bw.Write(payload)
	return err
}

// closeFrame sends a close frame and flushes.
func (c *conn) closeFrame(code int, reason string) {
	_ = c.write(wsClose, closePayload(uint16(code), reason))
	_ = c.bw.Flush()
}

// pong answers a waiting ping, if any.
func (c *conn) pong() error {
	select {
	case p := <-c.pings:
		return c.write(wsPong, p)
	default:
		return nil
	}
}

// run sends the log from start, then every event appended, until the client leaves, the relay
// closes or a fault ends the stream.
func (c *conn) run(start int, fault Fault) {
	r := c.relay
	pos := start
	for {
		r.mu.Lock()
		frames := r.log[pos:]
		notify := r.notify
		r.mu.Unlock()
		for i := range frames {
			if fault.Kind != FaultNone && c.sent == fault.After {
				stop, err := c.inject(fault.Kind, frames[i].Bytes)
				if stop || err != nil {
					return
				}
				fault = Fault{}
			}
			if c.pong() != nil || c.write(wsBinary, frames[i].Bytes) != nil {
				return
			}
			c.sent++
			if len(c.recent) == 16 {
				copy(c.recent, c.recent[1:])
				c.recent = c.recent[:15]
			}
			c.recent = append(c.recent, frames[i].Bytes)
			pos++
		}
		if fault.Kind != FaultNone && fault.Kind != FaultHalfFrame && c.sent == fault.After {
			stop, err := c.inject(fault.Kind, nil)
			if stop || err != nil {
				return
			}
			fault = Fault{}
		}
		if c.bw.Flush() != nil {
			return
		}
		select {
		case <-notify:
		case p := <-c.pings:
			if c.write(wsPong, p) != nil || c.bw.Flush() != nil {
				return
			}
		case <-c.done:
			c.closeFrame(websocket.CloseNormalClosure, "")
			return
		case <-r.ctx.Done():
			c.closeFrame(websocket.CloseGoingAway, "relay closing")
			return
		}
	}
}

// inject performs a fault before next (the frame about to be sent; nil when none is waiting).
// It reports whether the stream ends.
func (c *conn) inject(kind FaultKind, next []byte) (bool, error) {
	switch kind {
	case FaultDrop:
		_ = c.bw.Flush()
		return true, nil // the deferred close drops the TCP connection: no close frame
	case FaultHalfFrame:
		c.hdr = appendWSHeader(c.hdr[:0], wsBinary, len(next))
		_, _ = c.bw.Write(c.hdr)
		_, _ = c.bw.Write(next[:len(next)/2])
		_ = c.bw.Flush()
		return true, nil
	case FaultStall:
		_ = c.bw.Flush()
		select {
		case <-c.done:
		case <-c.relay.ctx.Done():
		}
		return true, nil
	case FaultTooSlow:
		_ = c.write(wsBinary, errorFrame("ConsumerTooSlow", "Stream consumer too slow"))
		c.closeFrame(websocket.ClosePolicyViolation, "ConsumerTooSlow")
		return true, nil
	case FaultRepeat:
		if len(c.recent) > 0 {
			return false, c.write(wsBinary, c.recent[len(c.recent)-1])
		}
	case FaultBackwards:
		if len(c.recent) > 1 {
			return false, c.write(wsBinary, c.recent[0])
		}
	case FaultUnknownFrame:
		body := &comatproto.SyncSubscribeRepos_Info{Name: "Bogus"}
		if err := c.write(wsBinary, encodeOpFrame(2, "#info", body)); err != nil {
			return false, err
		}
		return false, c.write(wsBinary, encodeOpFrame(1, "#bogus", body))
	}
	return false, nil
}
