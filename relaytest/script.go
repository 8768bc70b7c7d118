package relaytest

import (
	"fmt"
	"strings"

	cbg "github.com/whyrusleeping/cbor-gen"
)

// Op is one record operation of a scripted commit (AppendCommit).
type Op struct {
	Action    string            // "create", "update" or "delete"
	Path      string            // "<collection>/<rkey>"
	Record    cbg.CBORMarshaler // create and update: the record, e.g. *bsky.FeedLike
	Raw       []byte            // create and update when Record is nil: record bytes sent as they are
	OmitBlock bool              // leave the record's block out of the CAR (a missing-block op)
}

// AppendCommit appends and broadcasts one #commit by account user (0 <= user < Users) with ops
// applied in order to its repository, and returns the event's seq. Deleting a path the
// repository lacks gives an op without prev; creating an existing path overwrites it.
func (r *Relay) AppendCommit(user int, ops ...Op) (int64, error) {
	if user < 0 || user >= len(r.gen.users) {
		return 0, fmt.Errorf("%w: no user %d", ErrConfig, user)
	}
	specs := make([]opSpec, 0, len(ops))
	seen := map[string]bool{}
	for _, op := range ops {
		coll, rkey, ok := strings.Cut(op.Path, "/")
		if !ok || coll == "" || rkey == "" {
			return 0, fmt.Errorf("%w: op path %q", ErrConfig, op.Path)
		}
		if seen[op.Path] {
			return 0, fmt.Errorf("%w: path %q twice in one commit", ErrConfig, op.Path)
		}
		seen[op.Path] = true
		switch op.Action {
		case "create", "update":
			if op.Record == nil && op.Raw == nil {
				return 0, fmt.Errorf("%w: %s %s without a record", ErrConfig, op.Action, op.Path)
			}
		case "delete":
		default:
			return 0, fmt.Errorf("%w: op action %q", ErrConfig, op.Action)
		}
		specs = append(specs, opSpec{action: op.Action, coll: coll, rkey: rkey, rec: op.Record, raw: op.Raw, omit: op.OmitBlock})
	}
	r.genMu.Lock()
	defer r.genMu.Unlock()
	g := r.gen
	u := g.users[user]
	if err := g.ensureReady(u); err != nil {
		return 0, err
	}
	p := g.begin(KindCommit)
	if err := g.commit(u, specs, p); err != nil {
		return 0, err
	}
	b, err := p.job.finish()
	if err != nil {
		return 0, err
	}
	r.publish(Frame{Seq: p.seq, Time: p.t, Bytes: b, Kind: p.kind})
	return p.seq, nil
}

// AppendIdentity appends and broadcasts an #identity event for account user, with handle when
// it is not nil, and returns its seq.
func (r *Relay) AppendIdentity(user int, handle *string) int64 {
	r.genMu.Lock()
	defer r.genMu.Unlock()
	p, err := r.gen.identity(r.gen.users[user], handle)
	if err != nil {
		panic(fmt.Sprintf("relaytest: encode #identity: %v", err))
	}
	r.publish(Frame{Seq: p.seq, Time: p.t, Bytes: p.bytes, Kind: p.kind})
	return p.seq
}

// AppendAccount appends and broadcasts an #account event for account user and returns its seq.
func (r *Relay) AppendAccount(user int, active bool, status *string) int64 {
	r.genMu.Lock()
	defer r.genMu.Unlock()
	p, err := r.gen.account(r.gen.users[user], active, status)
	if err != nil {
		panic(fmt.Sprintf("relaytest: encode #account: %v", err))
	}
	r.publish(Frame{Seq: p.seq, Time: p.t, Bytes: p.bytes, Kind: p.kind})
	return p.seq
}

// AppendRaw appends and broadcasts b as the next frame, recorded with kind, and returns its seq.
func (r *Relay) AppendRaw(kind string, b []byte) int64 {
	r.genMu.Lock()
	defer r.genMu.Unlock()
	p := r.gen.begin(kind)
	r.publish(Frame{Seq: p.seq, Time: p.t, Bytes: b, Kind: kind})
	return p.seq
}
