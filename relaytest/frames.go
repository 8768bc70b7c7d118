package relaytest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/events"
	cbg "github.com/whyrusleeping/cbor-gen"
)

// Frame kinds, as Frame.Kind spells them: the header's t for messages, plus two for bad input.
const (
	KindCommit   = "#commit"
	KindIdentity = "#identity"
	KindAccount  = "#account"
	KindSync     = "#sync"
	KindInfo     = "#info"
	KindFoo      = "#foo"    // an event type no consumer knows (BadInput)
	KindGarbage  = "garbage" // bytes that are not a frame at all (BadInput)
)

// timeLayout is how relays write an event's time: RFC 3339, UTC, milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z"

// formatTime returns t as a relay writes it.
func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// encodeFrame returns a message frame: the DAG-CBOR header {op: 1, t} followed by the body.
// The log keeps every frame, so the buffer is sized (sizeHint) to waste little memory.
func encodeFrame(t string, body cbg.CBORMarshaler, sizeHint int) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(sizeHint + 64)
	hdr := events.EventHeader{Op: events.EvtKindMessage, MsgType: t}
	if err := hdr.MarshalCBOR(&buf); err != nil {
		return nil, fmt.Errorf("encode %s header: %w", t, err)
	}
	if err := body.MarshalCBOR(&buf); err != nil {
		return nil, fmt.Errorf("encode %s body: %w", t, err)
	}
	if b := buf.Bytes(); cap(b) > len(b)+len(b)/8+64 {
		return bytes.Clone(b), nil
	}
	return buf.Bytes(), nil
}

// encodeOpFrame returns a frame with an arbitrary header op (unknown-op faults).
func encodeOpFrame(op int64, t string, body cbg.CBORMarshaler) []byte {
	var buf bytes.Buffer
	hdr := events.EventHeader{Op: op, MsgType: t}
	_ = hdr.MarshalCBOR(&buf)  // cannot fail on a bytes.Buffer
	_ = body.MarshalCBOR(&buf) // ditto
	return buf.Bytes()
}

// errorFrame returns an error frame: header {op: -1} and body {error, message}.
func errorFrame(name, message string) []byte {
	var buf bytes.Buffer
	hdr := events.EventHeader{Op: events.EvtKindErrorFrame}
	_ = hdr.MarshalCBOR(&buf) // cannot fail on a bytes.Buffer
	body := events.ErrorFrame{Error: name, Message: message}
	_ = body.MarshalCBOR(&buf)
	return buf.Bytes()
}

// outdatedCursorFrame is the #info frame a relay sends before replaying from its oldest event.
func outdatedCursorFrame() []byte {
	msg := "Requested cursor exceeded limit. Possibly missing events"
	b, err := encodeFrame(KindInfo, &comatproto.SyncSubscribeRepos_Info{Name: "OutdatedCursor", Message: &msg}, 128)
	if err != nil {
		panic(err) // a fixed, valid value
	}
	return b
}

// Websocket opcodes (RFC 6455).
const (
	wsBinary = 0x2
	wsClose  = 0x8
	wsPong   = 0xA
)

// appendWSHeader appends an unmasked (server-to-client) websocket frame header with FIN set.
func appendWSHeader(buf []byte, opcode byte, n int) []byte {
	buf = append(buf, 0x80|opcode)
	switch {
	case n <= 125:
		buf = append(buf, byte(n))
	case n <= 0xFFFF:
		buf = append(buf, 126)
		buf = binary.BigEndian.AppendUint16(buf, uint16(n))
	default:
		buf = append(buf, 127)
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	return buf
}

// closePayload returns a close frame payload: the status code then the reason.
func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}
