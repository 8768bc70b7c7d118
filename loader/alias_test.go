package loader

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/backfill/backfill/decode"
	"github.com/backfill/backfill/relaytest"
)

// TestDecodeDoesNotAliasFrame checks what the read stage relies on when it recycles the buffers
// that hold frames (framePool): nothing a decoded event holds refers to its frame's bytes, nor
// to the decoder's buffers that the next frame reuses. Every frame of a realistic relay log
// (all event kinds, bad input, collisions) is decoded with one decoder into a buffer that is
// overwritten at once; each event must equal the event a fresh decoder makes from an untouched
// copy of the frame.
func TestDecodeDoesNotAliasFrame(t *testing.T) {
	r, err := relaytest.New(relaytest.Config{Seed: 7, Users: 40, Events: 3000, Collisions: true, BadInput: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	frames := r.Log()
	dec := decode.NewDecoder(decode.Options{})
	var buf []byte
	got := make([]*decode.Event, len(frames))
	errs := make([]string, len(frames))
	for i, f := range frames {
		buf = append(buf[:0], f.Bytes...)
		ev, err := dec.Decode(buf)
		got[i] = ev
		if err != nil {
			errs[i] = err.Error()
		}
		copy(buf, bytes.Repeat([]byte{0xA5}, len(buf)))
	}
	decoded := 0
	for i, f := range frames {
		want, err := decode.NewDecoder(decode.Options{}).Decode(bytes.Clone(f.Bytes))
		werr := ""
		if err != nil {
			werr = err.Error()
		}
		if errs[i] != werr {
			t.Fatalf("frame %d (seq %d): error %q, then %q from a fresh decoder", i, f.Seq, errs[i], werr)
		}
		if !reflect.DeepEqual(got[i], want) {
			t.Fatalf("frame %d (seq %d): the event changed when its frame and the decoder's buffers were reused:\n got %+v\nwant %+v", i, f.Seq, got[i], want)
		}
		if want != nil {
			decoded++
		}
	}
	if decoded < len(frames)/2 {
		t.Fatalf("only %d of %d frames decoded: the test checks too little", decoded, len(frames))
	}
}
