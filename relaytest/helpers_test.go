package relaytest

import (
	"bytes"
	"sync"
	"testing"
	"time"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/events"
	"github.com/ipfs/go-cid"
)

// testStart is a fixed start time, so generated logs are comparable across runs.
var testStart = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// newRelay starts a relay and closes it when the test ends.
func newRelay(t *testing.T, cfg Config) *Relay {
	t.Helper()
	if cfg.StartTime.IsZero() {
		cfg.StartTime = testStart
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// decodeFrame decodes a frame with indigo's event types.
func decodeFrame(t *testing.T, b []byte) *events.XRPCStreamEvent {
	t.Helper()
	var evt events.XRPCStreamEvent
	if err := evt.Deserialize(bytes.NewReader(b)); err != nil {
		t.Fatalf("decode frame: %v", err)
	}
	return &evt
}

// header decodes only a frame's header.
func header(t *testing.T, b []byte) events.EventHeader {
	t.Helper()
	var h events.EventHeader
	if err := h.UnmarshalCBOR(bytes.NewReader(b)); err != nil {
		t.Fatalf("decode header: %v", err)
	}
	return h
}

// frameSeq returns the seq a frame's body carries, or -1 for frames without one.
func frameSeq(t *testing.T, b []byte) int64 {
	t.Helper()
	evt := decodeFrame(t, b)
	switch {
	case evt.RepoCommit != nil:
		return evt.RepoCommit.Seq
	case evt.RepoIdentity != nil:
		return evt.RepoIdentity.Seq
	case evt.RepoAccount != nil:
		return evt.RepoAccount.Seq
	case evt.RepoSync != nil:
		return evt.RepoSync.Seq
	}
	return -1
}

// commitBreakdown splits a #commit's CAR into MST node bytes and everything else.
func commitBreakdown(t *testing.T, c *comatproto.SyncSubscribeRepos_Commit) (mstBytes int) {
	t.Helper()
	blocks, err := readCAR(c.Blocks)
	if err != nil {
		t.Fatalf("read CAR of seq %d: %v", c.Seq, err)
	}
	records := map[cid.Cid]bool{cid.Cid(c.Commit): true}
	for _, op := range c.Ops {
		if op.Cid != nil {
			records[cid.Cid(*op.Cid)] = true
		}
	}
	for k, b := range blocks {
		if !records[k] {
			mstBytes += len(b)
		}
	}
	return mstBytes
}

// sharedCfg is the 5,000-event log several tests read (generated once, without a server).
var sharedCfg = Config{Seed: 7, Users: 50, Events: 5000, BadInput: true, Collisions: true, StartTime: testStart}

var shared struct {
	once  sync.Once
	log   []Frame
	model *Model
	err   error
}

// sharedLog returns the log of sharedCfg and its model over every event.
func sharedLog(t *testing.T) ([]Frame, *Model) {
	t.Helper()
	shared.once.Do(func() {
		cfg, err := sharedCfg.withDefaults()
		if err != nil {
			shared.err = err
			return
		}
		shared.log, shared.err = newGenerator(cfg).generate(cfg.Events)
		shared.model = NewModel()
		for _, f := range shared.log {
			shared.model.Apply(f)
		}
	})
	if shared.err != nil {
		t.Fatalf("generate shared log: %v", shared.err)
	}
	return shared.log, shared.model
}
