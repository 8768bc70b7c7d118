package relaytest

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"time"

	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/api/bsky"
	"github.com/bluesky-social/indigo/atproto/repo"
	"github.com/bluesky-social/indigo/atproto/repo/mst"
	"github.com/bluesky-social/indigo/atproto/syntax"
	lexutil "github.com/bluesky-social/indigo/lex/util"
	"github.com/ipfs/go-cid"
	cbg "github.com/whyrusleeping/cbor-gen"
	secec "gitlab.com/yawning/secp256k1-voi/secec"
)

// Collections the generator writes.
const (
	collPost       = "app.bsky.feed.post"
	collLike       = "app.bsky.feed.like"
	collRepost     = "app.bsky.feed.repost"
	collFollow     = "app.bsky.graph.follow"
	collBlock      = "app.bsky.graph.block"
	collProfile    = "app.bsky.actor.profile"
	collThreadgate = "app.bsky.feed.threadgate"
	collList       = "app.bsky.graph.list"
	collListitem   = "app.bsky.graph.listitem"
)

// Sizes of each user's repository before the log starts: log-uniform between these. A real MST
// of this size makes the per-commit diff (the path from root to leaf) as big as on the network.
const (
	minInitialRecords = 100
	maxInitialRecords = 1200
)

// user is one generated account and its repository.
type user struct {
	idx    int
	did    string
	handle string // lower-case base handle
	clock  uint   // TID clock id

	ready      bool // repository built (lazily, on first use)
	keyBytes   []byte
	key        *secec.PrivateKey
	tree       mst.Tree
	root       cid.Cid
	rev        string
	lastMicros int64 // last TID timestamp handed out (revs and rkeys), for monotonic TIDs

	live   []liveRec      // records that deletes and updates can target
	liveAt map[string]int // path -> index in live

	recentLikes   []string // like subjects (uris), for deliberate duplicate pairs
	recentFollows []string // follow subjects (DIDs), ditto
	hasProfile    bool
}

// liveRec is a record in a user's repository that a later op may delete or update.
type liveRec struct {
	path, coll, rkey string
}

// postRef is a post that likes, reposts, replies and quotes can point at.
type postRef struct {
	uri, cid         string
	rootURI, rootCID string
}

// forcedOp is an op scheduled for a later event (Collisions): a quick delete or a re-create.
type forcedOp struct {
	due    int64 // event index at which it becomes due
	user   int
	action string // "delete" or "create"
	coll   string
	rkey   string
	like   string // for re-created likes: the subject uri to reuse ("" = a new one)
}

// opSpec is one op the generator is about to commit.
type opSpec struct {
	action string
	coll   string
	rkey   string
	rec    cbg.CBORMarshaler // the record for creates and updates
	raw    []byte            // record bytes written as is, when rec is nil
	omit   bool              // leave the record block out of the CAR
	post   *postRef          // a created post, added to the pool once its CID is known
}

func (o *opSpec) path() string { return o.coll + "/" + o.rkey }

// pendingFrame is one generated event, either finished (bytes) or waiting for signing (job).
type pendingFrame struct {
	seq   int64
	t     time.Time
	kind  string
	bytes []byte
	job   *commitJob
}

// generator produces the event log. It is not safe for concurrent use; Relay serializes it.
type generator struct {
	cfg   Config
	rng   *rand.Rand
	users []*user
	ext   []string  // external DIDs (no repository here)
	pool  []postRef // ring of recent posts
	poolN int       // posts ever added to the pool
	lists []string  // list uris, for list items

	n       int64 // events generated so far
	lastSeq int64
	forced  []forcedOp
}

// newGenerator derives users and the starting state from cfg (already defaulted).
func newGenerator(cfg Config) *generator {
	g := &generator{
		cfg:  cfg,
		rng:  rand.New(rand.NewPCG(uint64(cfg.Seed), 0x72656c6179)),
		pool: make([]postRef, 0, 4096),
	}
	g.lastSeq = cfg.FirstSeq - 1
	for i := range cfg.Users {
		u := &user{idx: i, did: "did:plc:" + g.base32(24), clock: uint(g.rng.IntN(1024))}
		u.handle = fmt.Sprintf("%s%d.%s", names[g.rng.IntN(len(names))], i, handleDomains[g.rng.IntN(len(handleDomains))])
		g.users = append(g.users, u)
	}
	for i := range 200 {
		if i%10 == 9 {
			g.ext = append(g.ext, fmt.Sprintf("did:web:%s%d.example.com", names[g.rng.IntN(len(names))], i))
		} else {
			g.ext = append(g.ext, "did:plc:"+g.base32(24))
		}
	}
	// Posts by accounts outside the generated set, so that likes and replies can start at once.
	before := cfg.StartTime.Add(-48 * time.Hour).UnixMicro()
	for i := range 512 {
		did := g.ext[g.rng.IntN(len(g.ext))]
		tid := syntax.NewTID(before+int64(i)*337_000_000, uint(g.rng.IntN(1024)))
		uri := "at://" + did + "/" + collPost + "/" + tid.String()
		c := g.fakeCID().String()
		g.addPost(postRef{uri: uri, cid: c, rootURI: uri, rootCID: c})
	}
	return g
}

const base32Alphabet = "abcdefghijklmnopqrstuvwxyz234567"

func (g *generator) base32(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = base32Alphabet[g.rng.IntN(32)]
	}
	return string(b)
}

// fakeCID returns the CID of a record that is never sent (pre-existing repository content).
func (g *generator) fakeCID() cid.Cid {
	var b [16]byte
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return cidOf(cid.DagCBOR, b[:])
}

func (g *generator) addPost(p postRef) {
	if len(g.pool) < cap(g.pool) {
		g.pool = append(g.pool, p)
	} else {
		g.pool[g.poolN%len(g.pool)] = p
	}
	g.poolN++
}

// pickPost returns one of the recent posts.
func (g *generator) pickPost() postRef {
	return g.pool[g.rng.IntN(len(g.pool))]
}

// pickUser returns an account, some far more active than others.
func (g *generator) pickUser() *user {
	f := g.rng.Float64()
	return g.users[int(float64(len(g.users))*f*f)]
}

// pickDID returns a follow/block subject: another account, or one outside the generated set.
func (g *generator) pickDID(self *user) string {
	if g.rng.Float64() < 0.2 || len(g.users) < 2 {
		return g.ext[g.rng.IntN(len(g.ext))]
	}
	for {
		u := g.users[g.rng.IntN(len(g.users))]
		if u != self {
			return u.did
		}
	}
}

// ensureReady builds the user's key and its repository as it stood before the log began, from a
// generator of its own so that the content does not depend on when it is first used.
func (g *generator) ensureReady(u *user) error {
	if u.ready {
		return nil
	}
	rng := rand.New(rand.NewPCG(uint64(g.cfg.Seed), uint64(u.idx)+1<<40))
	for {
		kb := make([]byte, 32)
		for i := range kb {
			kb[i] = byte(rng.Uint32())
		}
		k, err := secec.NewPrivateKey(kb)
		if err == nil {
			u.key, u.keyBytes = k, kb
			break
		}
	}
	u.liveAt = make(map[string]int)
	u.tree = mst.NewEmptyTree()
	n := int(minInitialRecords * math.Exp(rng.Float64()*math.Log(maxInitialRecords/minInitialRecords)))
	start := g.cfg.StartTime.Add(-365 * 24 * time.Hour).UnixMicro()
	step := (g.cfg.StartTime.Add(-time.Hour).UnixMicro() - start) / int64(n)
	keep := 40.0 / float64(n) // a sample of old records that deletes and updates may target
	for i := range n {
		var coll string
		switch r := rng.Float64(); {
		case r < 0.45:
			coll = collLike
		case r < 0.65:
			coll = collPost
		case r < 0.75:
			coll = collRepost
		case r < 0.90:
			coll = collFollow
		case r < 0.92:
			coll = collBlock
		default:
			coll = collListitem
		}
		rkey := syntax.NewTID(start+int64(i)*step+rng.Int64N(step), u.clock).String()
		var b [16]byte
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		path := coll + "/" + rkey
		if _, err := u.tree.Insert([]byte(path), cidOf(cid.DagCBOR, b[:])); err != nil {
			return fmt.Errorf("build repository %s: %w", u.did, err)
		}
		if rng.Float64() < keep {
			u.setLive(path, coll, rkey)
		}
	}
	if rng.Float64() < 0.5 {
		var b [16]byte
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		path := collProfile + "/self"
		if _, err := u.tree.Insert([]byte(path), cidOf(cid.DagCBOR, b[:])); err != nil {
			return fmt.Errorf("build repository %s: %w", u.did, err)
		}
		u.setLive(path, collProfile, "self")
		u.hasProfile = true
	}
	root, err := u.tree.RootCID()
	if err != nil {
		return fmt.Errorf("build repository %s: %w", u.did, err)
	}
	u.root = *root
	u.lastMicros = g.cfg.StartTime.Add(-time.Minute).UnixMicro()
	u.rev = syntax.NewTID(u.lastMicros, u.clock).String()
	u.ready = true
	return nil
}

func (u *user) setLive(path, coll, rkey string) {
	if _, ok := u.liveAt[path]; ok {
		return
	}
	u.liveAt[path] = len(u.live)
	u.live = append(u.live, liveRec{path: path, coll: coll, rkey: rkey})
}

func (u *user) removeLive(path string) {
	i, ok := u.liveAt[path]
	if !ok {
		return
	}
	last := len(u.live) - 1
	u.live[i] = u.live[last]
	u.liveAt[u.live[i].path] = i
	u.live = u.live[:last]
	delete(u.liveAt, path)
}

// nextTID returns a TID for t that is greater than every TID the user handed out before.
func (u *user) nextTID(t time.Time) string {
	us := t.UnixMicro()
	if us <= u.lastMicros {
		us = u.lastMicros + 1
	}
	u.lastMicros = us
	return syntax.NewTID(us, u.clock).String()
}

// timeOf returns the time of event i, as the frame will carry it (milliseconds).
func (g *generator) timeOf(i int64) time.Time {
	return g.cfg.StartTime.Add(time.Duration(i) * g.cfg.Interval).Truncate(time.Millisecond).UTC()
}

// nextSeq returns the next event's seq: one more than the last, or a random gap with Gaps.
func (g *generator) nextSeq() int64 {
	g.lastSeq++
	if g.cfg.Gaps && g.rng.Float64() < 0.05 {
		g.lastSeq += 1 + g.rng.Int64N(50)
	}
	return g.lastSeq
}

// begin allocates the next event's seq and time.
func (g *generator) begin(kind string) *pendingFrame {
	p := &pendingFrame{seq: g.nextSeq(), t: g.timeOf(g.n), kind: kind}
	g.n++
	return p
}

// generate produces n events. The repositories advance on this goroutine; signing and frame
// assembly run on up to GOMAXPROCS goroutines. The output depends only on the seed.
func (g *generator) generate(n int) ([]Frame, error) {
	out := make([]Frame, n)
	if n == 0 {
		return out, nil
	}
	workers := min(runtime.GOMAXPROCS(0), 8, (n+63)/64)
	type item struct {
		i int
		p *pendingFrame
	}
	ch := make(chan item, 512)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				b := it.p.bytes
				if it.p.job != nil {
					var err error
					if b, err = it.p.job.finish(); err != nil {
						errs[w] = fmt.Errorf("event seq %d: %w", it.p.seq, err)
						continue
					}
				}
				out[it.i] = Frame{Seq: it.p.seq, Time: it.p.t, Bytes: b, Kind: it.p.kind}
			}
		}()
	}
	var genErr error
	for i := range n {
		p, err := g.next()
		if err != nil {
			genErr = err
			break
		}
		ch <- item{i, p}
	}
	close(ch)
	wg.Wait()
	if genErr != nil {
		return nil, genErr
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Rates of each event type (fractions of all events).
const (
	rateBad      = 0.024 // with BadInput: split evenly over the eight kinds of bad input
	rateIdentity = 0.010
	rateAccount  = 0.008
	rateSync     = 0.003
	rateInfo     = 0.002
)

// next generates one event.
func (g *generator) next() (*pendingFrame, error) {
	if p, ok, err := g.nextForced(); ok || err != nil {
		return p, err
	}
	if g.cfg.BadInput && g.rng.Float64() < rateBad {
		return g.badEvent(g.rng.IntN(8))
	}
	switch r := g.rng.Float64(); {
	case r < rateIdentity:
		u := g.pickUser()
		var handle *string
		if g.rng.Float64() < 0.7 {
			h := g.mixedCase(u.handle)
			handle = &h
		}
		return g.identity(u, handle)
	case r < rateIdentity+rateAccount:
		active, status := g.accountStatus()
		return g.account(g.pickUser(), active, status)
	case r < rateIdentity+rateAccount+rateSync:
		return g.sync(g.pickUser())
	case r < rateIdentity+rateAccount+rateSync+rateInfo:
		msg := "Requested cursor exceeded limit. Possibly missing events"
		p := g.begin(KindInfo)
		b, err := encodeFrame(KindInfo, &comatproto.SyncSubscribeRepos_Info{Name: "OutdatedCursor", Message: &msg}, 128)
		p.bytes = b
		return p, err
	}
	u := g.pickUser()
	if err := g.ensureReady(u); err != nil {
		return nil, err
	}
	p := g.begin(KindCommit)
	ops := g.randomOps(u, p.t)
	return p, g.commit(u, ops, p)
}

// nextForced emits a scheduled op when one is due and still applies.
func (g *generator) nextForced() (*pendingFrame, bool, error) {
	for len(g.forced) > 0 && g.forced[0].due <= g.n {
		f := g.forced[0]
		g.forced = g.forced[1:]
		u := g.users[f.user]
		path := f.coll + "/" + f.rkey
		var op opSpec
		switch f.action {
		case "delete":
			if _, ok := u.liveAt[path]; !ok {
				continue
			}
			op = opSpec{action: "delete", coll: f.coll, rkey: f.rkey}
		case "create":
			if c, err := u.tree.Get([]byte(path)); err != nil || c != nil {
				continue
			}
			p := g.begin(KindCommit)
			op = g.recordFor(u, f.coll, p.t, f.like)
			op.rkey = f.rkey
			return p, true, g.commit(u, []opSpec{op}, p)
		}
		p := g.begin(KindCommit)
		return p, true, g.commit(u, []opSpec{op}, p)
	}
	return nil, false, nil
}

// schedule queues a forced op, keeping the queue ordered by due index.
func (g *generator) schedule(f forcedOp) {
	i := sort.Search(len(g.forced), func(i int) bool { return g.forced[i].due > f.due })
	g.forced = append(g.forced, forcedOp{})
	copy(g.forced[i+1:], g.forced[i:])
	g.forced[i] = f
}

// randomOps chooses a commit's ops: usually one, sometimes several.
func (g *generator) randomOps(u *user, t time.Time) []opSpec {
	if g.rng.Float64() >= 0.04 {
		return []opSpec{g.randomOp(u, t, nil)}
	}
	k := 2 + g.rng.IntN(4)
	used := map[string]bool{}
	var ops []opSpec
	if g.cfg.Collisions && g.rng.Float64() < 0.3 {
		// The same post liked twice in one commit, with different rkeys.
		a := g.likeOp(u, t, "")
		b := g.likeOp(u, t, a.rec.(*bsky.FeedLike).Subject.Uri)
		ops = append(ops, a, b)
	}
	for len(ops) < k {
		op := g.randomOp(u, t, used)
		if op.coll == collProfile {
			continue
		}
		if op.rkey != "" { // creates get fresh TID rkeys when committed
			if used[op.path()] {
				continue
			}
			used[op.path()] = true
		}
		ops = append(ops, op)
	}
	return ops
}

// randomOp chooses one op for u; avoid lists paths already used in the commit.
func (g *generator) randomOp(u *user, t time.Time, avoid map[string]bool) opSpec {
	switch r := g.rng.Float64(); {
	case r < 0.40:
		return g.likeOp(u, t, "")
	case r < 0.60:
		return g.recordFor(u, collPost, t, "")
	case r < 0.69:
		return g.recordFor(u, collRepost, t, "")
	case r < 0.79:
		return g.recordFor(u, collFollow, t, "")
	case r < 0.81:
		return g.recordFor(u, collBlock, t, "")
	case r < 0.83 && avoid == nil:
		action := "create"
		if u.hasProfile {
			action = "update"
		}
		op := g.recordFor(u, collProfile, t, "")
		op.action = action
		return op
	case r < 0.845:
		if lr, ok := g.pickLive(u, collPost, avoid); ok {
			op := g.recordFor(u, collPost, t, "")
			op.action, op.rkey = "update", lr.rkey
			return op
		}
	case r < 0.95:
		if lr, ok := g.pickLive(u, "", avoid); ok && !(avoid != nil && lr.coll == collProfile) {
			return opSpec{action: "delete", coll: lr.coll, rkey: lr.rkey}
		}
	default:
		return g.otherOp(u, t, avoid)
	}
	return g.likeOp(u, t, "")
}

// pickLive returns a random live record of u (of coll, when given) not in avoid.
func (g *generator) pickLive(u *user, coll string, avoid map[string]bool) (liveRec, bool) {
	if len(u.live) == 0 {
		return liveRec{}, false
	}
	for range 12 {
		lr := u.live[g.rng.IntN(len(u.live))]
		if (coll == "" || lr.coll == coll) && !avoid[lr.path] {
			return lr, true
		}
	}
	return liveRec{}, false
}

// likeOp creates a like; subject "" picks one (with Collisions, sometimes one u already liked).
func (g *generator) likeOp(u *user, t time.Time, subject string) opSpec {
	if subject == "" && g.cfg.Collisions && len(u.recentLikes) > 0 && g.rng.Float64() < 0.05 {
		subject = u.recentLikes[g.rng.IntN(len(u.recentLikes))]
	}
	return g.recordFor(u, collLike, t, subject)
}

// commit applies ops to u's repository and prepares the #commit frame in p.
func (g *generator) commit(u *user, ops []opSpec, p *pendingFrame) error {
	if err := g.ensureReady(u); err != nil {
		return err
	}
	prevRoot := lexutil.LexLink(u.root)
	ds := &diffStore{seen: make(map[cid.Cid]bool, 16)}
	var recs []block
	var deleted [][]byte
	repoOps := make([]*comatproto.SyncSubscribeRepos_RepoOp, 0, len(ops))
	for i := range ops {
		op := &ops[i]
		if op.rkey == "" {
			op.rkey = u.nextTID(p.t)
		}
		path := op.path()
		ro := &comatproto.SyncSubscribeRepos_RepoOp{Action: op.action, Path: path}
		switch op.action {
		case "create", "update":
			data := op.raw
			if op.rec != nil {
				var buf bytes.Buffer
				if err := op.rec.MarshalCBOR(&buf); err != nil {
					return fmt.Errorf("encode record %s: %w", path, err)
				}
				data = buf.Bytes()
			}
			c := cidOf(cid.DagCBOR, data)
			prev, err := u.tree.Insert([]byte(path), c)
			if err != nil {
				return fmt.Errorf("insert %s: %w", path, err)
			}
			ll := lexutil.LexLink(c)
			ro.Cid = &ll
			if op.action == "update" && prev != nil {
				pl := lexutil.LexLink(*prev)
				ro.Prev = &pl
			}
			if !op.omit {
				recs = append(recs, block{c: c, data: data})
			}
			u.setLive(path, op.coll, op.rkey)
			g.track(u, op, c, p)
		case "delete":
			prev, err := u.tree.Remove([]byte(path))
			if err != nil {
				return fmt.Errorf("remove %s: %w", path, err)
			}
			if prev != nil {
				pl := lexutil.LexLink(*prev)
				ro.Prev = &pl
			}
			deleted = append(deleted, []byte(path))
			u.removeLive(path)
			if op.coll == collProfile {
				u.hasProfile = false
			}
			if g.cfg.Collisions && op.coll != collProfile && g.rng.Float64() < 0.15 {
				g.schedule(forcedOp{due: g.n + 1 + g.rng.Int64N(20), user: u.idx, action: "create", coll: op.coll, rkey: op.rkey})
			}
		default:
			return fmt.Errorf("relaytest: op action %q", op.action)
		}
		repoOps = append(repoOps, ro)
	}
	root, err := u.tree.WriteDiffBlocks(context.Background(), ds)
	if err != nil {
		return fmt.Errorf("write MST diff of %s: %w", u.did, err)
	}
	for _, k := range deleted {
		if err := ds.addPath(u.tree.Root, k); err != nil {
			return err
		}
	}
	since := u.rev
	rev := u.nextTID(p.t)
	u.root, u.rev = *root, rev
	p.job = &commitJob{
		key:    u.key,
		commit: repo.Commit{DID: u.did, Version: repo.ATPROTO_REPO_VERSION, Data: *root, Rev: rev},
		blocks: append(ds.blocks, recs...),
		msg: &comatproto.SyncSubscribeRepos_Commit{
			Blobs:    []lexutil.LexLink{},
			Ops:      repoOps,
			PrevData: &prevRoot,
			Repo:     u.did,
			Rev:      rev,
			Seq:      p.seq,
			Since:    &since,
			Time:     formatTime(p.t),
		},
	}
	return nil
}

// track updates the generator's bookkeeping after a create or update.
func (g *generator) track(u *user, op *opSpec, c cid.Cid, p *pendingFrame) {
	switch op.coll {
	case collPost:
		if op.post != nil {
			op.post.uri = "at://" + u.did + "/" + op.path()
			op.post.cid = c.String()
			if op.post.rootURI == "" {
				op.post.rootURI, op.post.rootCID = op.post.uri, op.post.cid
			}
			g.addPost(*op.post)
		}
	case collProfile:
		u.hasProfile = true
	case collList:
		g.lists = append(g.lists, "at://"+u.did+"/"+op.path())
	}
	if g.cfg.Collisions && op.action == "create" && (op.coll == collLike || op.coll == collFollow) && g.rng.Float64() < 0.03 {
		g.schedule(forcedOp{due: g.n + g.rng.Int64N(4), user: u.idx, action: "delete", coll: op.coll, rkey: op.rkey})
	}
}

// identity prepares an #identity event.
func (g *generator) identity(u *user, handle *string) (*pendingFrame, error) {
	p := g.begin(KindIdentity)
	b, err := encodeFrame(KindIdentity, &comatproto.SyncSubscribeRepos_Identity{Did: u.did, Handle: handle, Seq: p.seq, Time: formatTime(p.t)}, 160)
	p.bytes = b
	return p, err
}

// account prepares an #account event.
func (g *generator) account(u *user, active bool, status *string) (*pendingFrame, error) {
	p := g.begin(KindAccount)
	b, err := encodeFrame(KindAccount, &comatproto.SyncSubscribeRepos_Account{Active: active, Did: u.did, Seq: p.seq, Status: status, Time: formatTime(p.t)}, 160)
	p.bytes = b
	return p, err
}

// accountStatuses are the inactive statuses #account events carry, plus one not known yet.
var accountStatuses = []string{"takendown", "suspended", "deleted", "deactivated", "desynchronized", "throttled", "hibernating"}

func (g *generator) accountStatus() (bool, *string) {
	i := g.rng.IntN(len(accountStatuses) + 2)
	if i >= len(accountStatuses) {
		return true, nil
	}
	s := accountStatuses[i]
	return false, &s
}

// sync prepares a #sync event: a new signed commit of the unchanged repository, alone in its CAR.
func (g *generator) sync(u *user) (*pendingFrame, error) {
	if err := g.ensureReady(u); err != nil {
		return nil, err
	}
	p := g.begin(KindSync)
	rev := u.nextTID(p.t)
	u.rev = rev
	p.job = &commitJob{
		key:    u.key,
		commit: repo.Commit{DID: u.did, Version: repo.ATPROTO_REPO_VERSION, Data: u.root, Rev: rev},
		sync:   &comatproto.SyncSubscribeRepos_Sync{Did: u.did, Rev: rev, Seq: p.seq, Time: formatTime(p.t)},
	}
	return p, nil
}

// mixedCase returns h with some letters upper-cased, as handles sometimes arrive.
func (g *generator) mixedCase(h string) string {
	b := []byte(h)
	for i, c := range b {
		if c >= 'a' && c <= 'z' && g.rng.IntN(3) == 0 {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
