package decode

import (
	"bytes"
	"fmt"
	"strings"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/api/bsky"
	cbg "github.com/whyrusleeping/cbor-gen"
)

// Options configures a Decoder.
type Options struct {
	// Collections are the collections whose records are decoded into rows; empty means all six.
	// Ops of the others get a ReasonFiltered problem and no row, and their records are not read.
	Collections []Collection
	// OpsOnly leaves a commit's CAR slice and records unread: its ops carry their action, URI,
	// collection and CID, and no row. It is Decode with the same outcome for everything else
	// (frame errors, seq, time, DID, paths, deletes), at a fraction of the cost: what a fetch
	// can afford per frame (package deletes).
	OpsOnly bool
}

// Decoder turns frames into Events. It reuses buffers between calls, so it is not safe for
// concurrent use: give each worker its own.
type Decoder struct {
	want    [NumCollections]bool
	opsOnly bool

	br     bytes.Reader
	cr     *cbg.CborReader // reads br; cbor-gen reuses a *CborReader it is given
	car    carIndex
	commit commitEnv  // the commit being decoded, see scanCommit
	post   leanPost   // the post being decoded, see readPost
	jsonw  jsonWriter // transcodes record fields to JSON

	// Message and record structs, reused: cbor-gen resets them before decoding.
	identity comatproto.SyncSubscribeRepos_Identity
	account  comatproto.SyncSubscribeRepos_Account
	sync     comatproto.SyncSubscribeRepos_Sync
	info     comatproto.SyncSubscribeRepos_Info
	profile  bsky.ActorProfile
}

// NewDecoder returns a Decoder for opts.
func NewDecoder(opts Options) *Decoder {
	d := &Decoder{opsOnly: opts.OpsOnly}
	d.cr = cbg.NewCborReader(&d.br)
	d.car.seed = newSeed()
	for _, c := range opts.Collections {
		if c > CollectionOther && c < NumCollections {
			d.want[c] = true
		}
	}
	if len(opts.Collections) == 0 {
		for c := CollectionOther + 1; c < NumCollections; c++ {
			d.want[c] = true
		}
	}
	return d
}

// Decode decodes one frame. A frame whose header or body does not decode gives an error (the
// caller counts it as ReasonBadFrame); everything short of that gives an Event, with what was
// skipped or repaired listed in its Problems.
func (d *Decoder) Decode(frame []byte) (*Event, error) {
	var h Header
	r := cborReader{b: frame}
	if err := readFrameHeader(&r, &h); err != nil {
		return nil, fmt.Errorf("frame header: %w", err)
	}
	body := frame[r.off:]
	// scanCommit reads a #commit body whole, every value and no byte past the map, which
	// checks all that checkMapItem does (checkCommitScan fuzzes it): a second pass over the
	// ops took 7% of the decoding.
	if h.Kind != KindCommit {
		if err := checkMapItem(body); err != nil {
			return nil, fmt.Errorf("frame body: %w", err)
		}
	}
	ev := &Event{Kind: h.Kind}
	var err error
	switch h.Kind {
	case KindCommit:
		err = d.decodeCommit(body, ev)
	case KindIdentity:
		err = d.decodeIdentity(body, ev)
	case KindAccount:
		err = d.decodeAccount(body, ev)
	case KindSync:
		err = d.decodeSync(body, ev)
	case KindInfo:
		if err = d.unmarshal(body, &d.info); err == nil {
			ev.Name = d.info.Name
		}
	default: // KindError, KindUnknown: the generic scan has all this package uses
		br := cborReader{b: body}
		if err = scanBody(&br, &h); err != nil {
			break
		}
		ev.Seq, ev.Time = h.Seq, h.Time
		ev.DID, _ = cleanText(h.DID) // not checked: this package reads nothing else of the event
		if h.Kind == KindError {
			ev.Name = h.ErrorName
		} else {
			addProblem(ev, ReasonUnknownType, h.DID, fmt.Sprintf("op %d type %q", h.Op, h.Type))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s body: %w", h.Kind, err)
	}
	return ev, nil
}

// unmarshal decodes b into v with its cbor-gen code. b has passed checkMapItem (or a reader of
// this package has read it whole, which checks as much). A panic in
// the generated code becomes an error: frames are untrusted and one must not stop a load.
func (d *Decoder) unmarshal(b []byte, v cbg.CBORUnmarshaler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decode: CBOR decoder panic: %v", p)
		}
	}()
	d.br.Reset(b)
	return v.UnmarshalCBOR(d.cr)
}

// setTime sets the event's time from its time field, with a ReasonBadTime problem when it does
// not parse.
func setTime[T string | []byte](ev *Event, s T) {
	t, ok := parseEventTime(s)
	if !ok {
		addProblem(ev, ReasonBadTime, ev.DID, fmt.Sprintf("event time %q", truncate(string(s), 64)))
	}
	ev.Time = t
}

// setDID sets the event's DID, with a ReasonBadDID problem (and the DID cleaned for storage)
// when it does not parse. It reports whether the DID is valid.
func setDID(ev *Event, did string) bool {
	ev.DID = did
	if err := checkDID(did); err != nil {
		ev.DID, _ = cleanText(did)
		addProblem(ev, ReasonBadDID, did, err.Error())
		return false
	}
	return true
}

func (d *Decoder) decodeIdentity(body []byte, ev *Event) error {
	m := &d.identity
	if err := d.unmarshal(body, m); err != nil {
		return err
	}
	ev.Seq = m.Seq
	setDID(ev, m.Did)
	setTime(ev, m.Time)
	if m.Handle != nil {
		h, cleaned := cleanText(*m.Handle)
		if cleaned {
			addProblem(ev, ReasonCleanedText, ev.DID, "handle")
		}
		h = strings.ToLower(h)
		ev.Handle = &h
	}
	return nil
}

func (d *Decoder) decodeAccount(body []byte, ev *Event) error {
	m := &d.account
	if err := d.unmarshal(body, m); err != nil {
		return err
	}
	ev.Seq = m.Seq
	setDID(ev, m.Did)
	setTime(ev, m.Time)
	ev.Active = m.Active
	switch {
	case m.Status != nil:
		s, cleaned := cleanText(*m.Status)
		if cleaned {
			addProblem(ev, ReasonCleanedText, ev.DID, "status")
		}
		ev.Status = s
	case m.Active:
		ev.Status = "active"
	}
	return nil
}

func (d *Decoder) decodeSync(body []byte, ev *Event) error {
	m := &d.sync
	if err := d.unmarshal(body, m); err != nil {
		return err
	}
	ev.Seq = m.Seq
	setDID(ev, m.Did)
	setTime(ev, m.Time)
	return nil
}

// decodeCommit decodes a #commit body: its envelope by scanCommit, then each op.
func (d *Decoder) decodeCommit(body []byte, ev *Event) error {
	c := &d.commit
	if err := scanCommit(body, c); err != nil {
		return err
	}
	ev.Seq = c.seq
	valid := setDID(ev, string(c.repo))
	setTime(ev, c.time)
	if !valid {
		return nil
	}
	if !d.opsOnly {
		if err := d.car.parse(c.blocks); err != nil {
			addProblem(ev, ReasonBadCAR, ev.DID, err.Error())
		}
	}
	ev.Ops = make([]Op, len(c.ops))
	for i := range c.ops {
		d.decodeOp(ev, &ev.Ops[i], &c.ops[i])
	}
	return nil
}

// Collection NSIDs.
const (
	nsidPost    = "app.bsky.feed.post"
	nsidLike    = "app.bsky.feed.like"
	nsidRepost  = "app.bsky.feed.repost"
	nsidFollow  = "app.bsky.graph.follow"
	nsidBlock   = "app.bsky.graph.block"
	nsidProfile = "app.bsky.actor.profile"
)

// collectionOf maps an NSID to its Collection.
func collectionOf(nsid string) Collection {
	switch nsid {
	case nsidPost:
		return CollectionPost
	case nsidLike:
		return CollectionLike
	case nsidRepost:
		return CollectionRepost
	case nsidFollow:
		return CollectionFollow
	case nsidBlock:
		return CollectionBlock
	case nsidProfile:
		return CollectionProfile
	}
	return CollectionOther
}

// parseAction maps an op action to an Action, 0 when it is none of the three.
func parseAction(s []byte) Action {
	switch string(s) {
	case "create":
		return ActionCreate
	case "update":
		return ActionUpdate
	case "delete":
		return ActionDelete
	}
	return 0
}

// decodeOp fills op from one commit op. Whatever goes wrong is a problem of this op only.
func (d *Decoder) decodeOp(ev *Event, op *Op, rop *commitOp) {
	if rop.null {
		addProblem(ev, ReasonBadAction, ev.DID, "null op")
		return
	}
	op.Action = parseAction(rop.action)
	// One allocation: the path, NSID and Rkey are slices of the URI.
	uri := "at://" + ev.DID + "/" + string(rop.path)
	path := uri[len(uri)-len(rop.path):]
	slash := strings.IndexByte(path, '/')
	if slash < 0 {
		addProblem(ev, ReasonBadURI, uri, "op path is not <collection>/<rkey>")
		return
	}
	coll := collectionOf(path[:slash])
	if coll == CollectionOther {
		if err := checkNSID(path[:slash]); err != nil {
			addProblem(ev, ReasonBadURI, uri, err.Error())
			return
		}
	}
	if err := checkRkey(path[slash+1:]); err != nil {
		addProblem(ev, ReasonBadURI, uri, err.Error())
		return
	}
	op.URI = uri
	op.NSID = path[:slash]
	op.Rkey = path[slash+1:]

	if op.Action == 0 {
		addProblem(ev, ReasonBadAction, op.URI, fmt.Sprintf("action %q", truncate(string(rop.action), 32)))
		return
	}
	if op.Action != ActionDelete && rop.cid != nil {
		op.CID = cidString(rop.cid)
	}
	switch {
	case coll == CollectionOther:
		addProblem(ev, ReasonOtherCollection, op.URI, "")
		return
	case coll == CollectionProfile && op.Rkey != "self":
		// CollectionProfile means the users row; another rkey is no profile at all.
		addProblem(ev, ReasonBadURI, op.URI, "profile rkey is not self")
		return
	}
	op.Collection = coll
	if !d.want[coll] {
		addProblem(ev, ReasonFiltered, op.URI, "")
		return
	}
	if op.Action == ActionDelete || d.opsOnly {
		return
	}
	if rop.cid == nil {
		addProblem(ev, ReasonMissingBlock, op.URI, "op has no cid")
		return
	}
	data, ok := d.car.find(rop.cid)
	if !ok {
		addProblem(ev, ReasonMissingBlock, op.URI, "no block for cid "+op.CID)
		return
	}
	d.decodeRecord(ev, op, data)
}

// addProblem appends a problem with its fields bounded.
func addProblem(ev *Event, reason Reason, subject, detail string) {
	ev.Problems = append(ev.Problems, Problem{
		Reason:  reason,
		Subject: truncate(subject, maxSubject),
		Detail:  truncate(detail, maxDetail),
	})
}
