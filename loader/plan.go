package loader

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/backfill/backfill/decode"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// item is one frame of a unit after decoding.
type item struct {
	seq int64         // the spool record's seq
	seg int           // index of the frame's segment in its unit
	ev  *decode.Event // nil when the frame did not decode
	err error         // why the frame did not decode
}

// mark is a relay's high-water mark: the highest seq processed and that event's time.
type mark struct {
	seq  int64
	time time.Time
}

// pairKey is the second unique key of likes, reposts, follows and blocks.
type pairKey struct{ a, b string }

// pairOp is one create or delete of a pair table; an update is a delete then a create at the
// same pos.
type pairOp struct {
	pos     int64
	del     bool
	uri     string
	key     pairKey
	created time.Time
	indexed time.Time
	uh, ph  keyHash // the uri's and (a create's) pair's hashes (seen.go)
	// doomed: the last op at its uri in the unit, and a later delete of the spool removes its
	// row (hints.go); the writer may leave it out (pending.go).
	doomed bool
	ahead  bool // written by the unit's head start (head.go)
}

// postState is the net effect of a unit's ops on one post uri: delete the row (del), then insert
// row unless a row with that uri exists (row nil: insert nothing).
type postState struct {
	del     bool
	row     *decode.PostRow
	indexed time.Time
	hash    keyHash // the uri in the filter of written keys (seen.go), set with row
	ahead   bool    // row written by the unit's head start (head.go)
}

type userRow struct {
	did string
	t   time.Time
}

type profileSet struct {
	did         string
	uri         string // of the op that set it
	displayName *string
	description *string
	avatar      *string
	banner      *string
	pinned      []byte
	record      []byte
}

type accountRow struct {
	did    string
	active bool
	status string
	seq    int64
	t      time.Time
}

// pair tables in Table order, starting at TableLikes.
const numPairTables = 4

// unitPlan is everything a unit writes, reduced in memory to what set-based statements need.
type unitPlan struct {
	segCounts []counts // per segment of the unit
	start     mark     // the relay mark before the unit
	end       mark     // the relay mark after the unit

	users    []userRow              // ensured users, first naming event's time
	named    map[string]struct{}    // the DIDs in users
	profiles map[string]*profileSet // last profile op per DID; nil fields clear
	handles  map[string]string      // last handle per DID
	accounts map[string]*accountRow // last account event per DID

	posts    map[string]*postState
	postURIs []string // posts in first-touch order
	pairs    [numPairTables][]pairOp

	// The phase cut of each pair table made without the pre-existing rows, and the uris whose
	// pre-existing pairs could change it (the writer reads them and cuts again if they do):
	// lookups is the set; the first phase's deletes return the pairs of those they delete, and
	// the others (lateLookups) are read before.
	phases      [numPairTables]phasePlan
	lookups     [numPairTables]map[string]bool
	lateLookups [numPairTables][]string

	// The statements' inputs, sorted by key where a statement takes row locks.
	postDeletes []string
	postRows    []*postState
	elided      [NumTables]int64 // creates left out: a later delete in the spool removes them (hints.go)
	awaits      int64            // the last seq of those deletes (of the pair creates that may be left out)
	profileList []*profileSet
	handleDIDs  []string
	accountList []*accountRow
}

// planner turns decoded units into plans; one per Run, used by the decode stage only.
type planner struct {
	selected [decode.NumCollections]bool
	since    time.Time
	until    time.Time
	lim      limits
	log      *slog.Logger
	hints    *hintWindow // deletes ahead of the unit (hints.go); nil when off
	// pairShare is each pair table's ops per item in the last unit planned: the next unit's
	// lists start at about that size (grown by append, their copies were a tenth of planning).
	pairShare [numPairTables]float64
}

func newPlanner(cfg Config, lim limits) *planner {
	p := &planner{since: cfg.Since, until: cfg.Until, lim: lim, log: cfg.Logger}
	for c := decode.CollectionOther + 1; c < decode.NumCollections; c++ {
		p.selected[c] = len(cfg.Collections) == 0
	}
	for _, c := range cfg.Collections {
		p.selected[c] = true
	}
	return p
}

func (p *planner) debug(msg string, args ...any) {
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug(msg, args...)
	}
}

// skip counts one skipped or repaired input and logs it at debug level.
func (p *planner) skip(c *counts, seq int64, r decode.Reason, subject, detail string) {
	c.reason(r, 1)
	p.debug("skipped input", "seq", seq, "reason", string(r), "subject", bound(subject), "detail", bound(detail))
}

// plan applies the unit's events in seq order, starting from the relay mark m.
func (p *planner) plan(rd *readResult, m mark) *unitPlan {
	items := rd.items
	// Sized for a unit of events like the firehose's (map growth was a third of planning).
	n := len(items)
	u := &unitPlan{
		segCounts: make([]counts, len(rd.frames)),
		start:     m,
		users:     make([]userRow, 0, n/2),
		named:     make(map[string]struct{}, n/2),
		profiles:  map[string]*profileSet{},
		handles:   map[string]string{},
		accounts:  map[string]*accountRow{},
		posts:     make(map[string]*postState, n/8),
	}
	for i, share := range p.pairShare {
		if share > 0 {
			u.pairs[i] = make([]pairOp, 0, int(share*float64(n)*1.125)+16)
		}
	}
	for i := range u.segCounts {
		u.segCounts[i].frames = rd.frames[i]
		if rd.unread[i] > 0 {
			u.segCounts[i].reason(ReasonAlreadyLoaded, rd.unread[i])
		}
	}
	var pos int64
	for i := range items {
		it := &items[i]
		c := &u.segCounts[it.seg]
		ev := it.ev
		if ev == nil {
			if it.seq > 0 && it.seq <= m.seq {
				c.reason(ReasonAlreadyLoaded, 1)
				continue
			}
			detail := ""
			if it.err != nil {
				detail = it.err.Error()
			}
			p.skip(c, it.seq, decode.ReasonBadFrame, "", detail)
			if it.seq > m.seq {
				m.seq = it.seq
			}
			continue
		}
		switch ev.Kind {
		case decode.KindCommit, decode.KindIdentity, decode.KindAccount, decode.KindSync:
			if ev.Seq == 0 {
				// A sequenced event whose body lacks its seq: the spool's seq keeps it in order.
				ev.Seq = it.seq
			}
		}
		if ev.Seq > 0 && ev.Seq <= m.seq {
			c.reason(ReasonAlreadyLoaded, 1)
			continue
		}
		if int(ev.Kind) < numKinds {
			c.events[ev.Kind]++
		}
		switch ev.Kind {
		case decode.KindCommit, decode.KindIdentity, decode.KindAccount, decode.KindSync:
		default:
			// #info, error frames and unknown types carry nothing to write.
			p.problems(c, ev)
			if ev.Seq > 0 {
				m.seq = ev.Seq
				if !ev.Time.IsZero() {
					m.time = ev.Time.UTC()
				}
			}
			continue
		}
		t := ev.Time.UTC()
		if ev.Time.IsZero() {
			if m.time.IsZero() {
				p.skip(c, ev.Seq, ReasonNoTime, ev.DID, "")
				m.seq = max(m.seq, ev.Seq)
				continue
			}
			t = m.time
			dropEventTimeProblem(ev) // counted once, as what was done about it
			p.skip(c, ev.Seq, ReasonTimeFallback, ev.DID, "")
		}
		m = mark{seq: max(m.seq, ev.Seq), time: t}
		if (!p.since.IsZero() && t.Before(p.since)) || (!p.until.IsZero() && !t.Before(p.until)) {
			p.skip(c, ev.Seq, ReasonOutOfWindow, ev.DID, t.Format(time.RFC3339))
			continue
		}
		p.problems(c, ev)
		if ev.DID == "" || (hasProblem(ev, decode.ReasonBadDID) && !validDID(ev.DID)) {
			// decode counted why (bad_did); an event without a valid DID names nobody.
			continue
		}
		if !p.lim.fits("users", "did", ev.DID) {
			p.skip(c, ev.Seq, ReasonTooLong, ev.DID, "users.did")
			continue
		}
		switch ev.Kind {
		case decode.KindCommit:
			u.ensure(ev.DID, t)
			for j := range ev.Ops {
				pos++
				p.op(u, c, ev, &ev.Ops[j], t, pos)
			}
		case decode.KindIdentity:
			u.ensure(ev.DID, t)
			if ev.Handle != nil {
				if p.lim.fits("users", "handle", *ev.Handle) {
					u.handles[ev.DID] = *ev.Handle
				} else {
					p.skip(c, ev.Seq, ReasonTooLong, ev.DID, "users.handle")
				}
			}
		case decode.KindAccount:
			u.ensure(ev.DID, t)
			u.accounts[ev.DID] = &accountRow{did: ev.DID, active: ev.Active, status: ev.Status, seq: ev.Seq, t: t}
		case decode.KindSync:
			u.ensure(ev.DID, t)
		}
	}
	u.end = m
	for _, uri := range u.postURIs {
		st := u.posts[uri]
		if st.del {
			u.postDeletes = append(u.postDeletes, uri)
		}
		if st.row == nil {
			continue
		}
		if seq := p.hints.deletedAfter(uri, m.seq); seq > 0 {
			// The row that the unit leaves at uri is deleted by a later event: the database
			// never needs it (hints.go).
			st.row = nil
			u.elided[TablePosts]++
			u.awaits = max(u.awaits, seq)
			continue
		}
		st.hash = uriHash(TablePosts, uri)
		u.postRows = append(u.postRows, st)
	}
	// Creates are COPYed in key order (target.copy); sorted here, off the writer's path.
	slices.SortFunc(u.postRows, func(a, b *postState) int { return strings.Compare(a.row.URI, b.row.URI) })
	slices.SortFunc(u.users, func(a, b userRow) int { return strings.Compare(a.did, b.did) })
	for did, ps := range u.profiles {
		if seq := p.hints.deletedAfter(ps.uri, m.seq); seq > 0 {
			// A later delete or update of the profile sets every column the unit's would: the
			// database never needs this one (hints.go).
			delete(u.profiles, did)
			u.elided[TableUsers]++
			u.awaits = max(u.awaits, seq)
		}
	}
	u.profileList = sortedValues(u.profiles)
	u.handleDIDs = sortedKeys(u.handles)
	u.accountList = sortedValues(u.accounts)
	for i := range u.pairs {
		if n > 0 {
			p.pairShare[i] = float64(len(u.pairs[i])) / float64(n)
		}
		u.awaits = max(u.awaits, markDoomed(u.pairs[i], p.hints, m.seq))
		u.phases[i] = cutPhases(u.pairs[i], nil)
		lookups := lookupURIs(u.pairs[i])
		if len(lookups) == 0 {
			continue
		}
		first := make(map[string]bool, len(u.phases[i].deletes[0]))
		for _, uri := range u.phases[i].deletes[0] {
			first[uri] = true
		}
		u.lookups[i] = make(map[string]bool, len(lookups))
		for _, uri := range lookups {
			u.lookups[i][uri] = true
			if !first[uri] {
				u.lateLookups[i] = append(u.lateLookups[i], uri)
			}
		}
	}
	return u
}

// markDoomed marks the creates of ops (a pair table's, in seq order) that are the last op at
// their uri and whose uri a delete after seq end removes, and returns the last seq of those
// deletes (0 when it marks none).
func markDoomed(ops []pairOp, h *hintWindow, end int64) (awaits int64) {
	if h == nil || len(h.last) == 0 {
		return 0
	}
	type doomed struct {
		j   int   // the create
		seq int64 // the delete
	}
	var last map[string]doomed // uri -> its doomed create, while no later op touched the uri
	for j := range ops {
		op := &ops[j]
		var seq int64
		if !op.del {
			seq = h.deletedAfter(op.uri, end)
		}
		if seq > 0 {
			if last == nil {
				last = map[string]doomed{}
			}
			last[op.uri] = doomed{j, seq}
		} else if last != nil {
			delete(last, op.uri)
		}
	}
	for _, d := range last {
		ops[d.j].doomed = true
		awaits = max(awaits, d.seq)
	}
	return awaits
}

// problems counts and logs what decode reported about ev.
func (p *planner) problems(c *counts, ev *decode.Event) {
	for _, pr := range ev.Problems {
		p.skip(c, ev.Seq, pr.Reason, pr.Subject, pr.Detail)
	}
}

// dropEventTimeProblem removes the bad_time problem decode gives an event whose time does not
// parse: its subject is the event's DID, where a record's createdAt has the op's at:// URI.
func dropEventTimeProblem(ev *decode.Event) {
	for i, pr := range ev.Problems {
		if pr.Reason == decode.ReasonBadTime && !strings.HasPrefix(pr.Subject, "at://") {
			ev.Problems = slices.Delete(ev.Problems, i, i+1)
			return
		}
	}
}

func hasProblem(ev *decode.Event, r decode.Reason) bool {
	for _, pr := range ev.Problems {
		if pr.Reason == r {
			return true
		}
	}
	return false
}

// validDID reports whether s is a DID; only asked when decode reported a bad DID somewhere in
// the event, which may be a subject's rather than the event's own.
func validDID(s string) bool {
	_, err := syntax.ParseDID(s)
	return err == nil
}

// ensure records that did is named at time t; the first time in the unit wins.
func (u *unitPlan) ensure(did string, t time.Time) {
	if _, ok := u.named[did]; ok {
		return
	}
	u.named[did] = struct{}{}
	u.users = append(u.users, userRow{did: did, t: t})
}

// op plans one commit op.
func (p *planner) op(u *unitPlan, c *counts, ev *decode.Event, op *decode.Op, t time.Time, pos int64) {
	col := op.Collection
	if col == decode.CollectionOther || col >= decode.NumCollections {
		return // decode counted it (other_collection)
	}
	if !p.selected[col] {
		return // decode counted it (filtered)
	}
	switch op.Action {
	case decode.ActionCreate, decode.ActionUpdate, decode.ActionDelete:
	default:
		return // decode counted it (bad_action)
	}
	del := op.Action == decode.ActionDelete
	// An update replaces the record: the old row goes even when the new record gives none (it
	// did not decode, or cannot be stored), as the repository no longer holds the old one.
	update := op.Action == decode.ActionUpdate
	switch col {
	case decode.CollectionPost:
		st := u.posts[op.URI]
		deletePost := func() {
			if st == nil {
				st = &postState{}
				u.posts[op.URI] = st
				u.postURIs = append(u.postURIs, op.URI)
			}
			st.del, st.row = true, nil
		}
		if del {
			deletePost()
			return
		}
		r := op.Post
		if r == nil {
			if update {
				deletePost()
			}
			return // the record did not decode: counted by decode
		}
		for _, f := range [...]struct{ col, v string }{{"uri", op.URI}, {"cid", r.CID}, {"author_did", r.AuthorDID}, {"parent_uri", r.ParentURI}, {"root_uri", r.RootURI}} {
			if !p.lim.fits("posts", f.col, f.v) {
				p.skip(c, ev.Seq, ReasonTooLong, op.URI, "posts."+f.col)
				if update {
					deletePost()
				}
				return
			}
		}
		if st == nil {
			st = &postState{}
			u.posts[op.URI] = st
			u.postURIs = append(u.postURIs, op.URI)
		}
		switch {
		case op.Action == decode.ActionUpdate:
			st.del, st.row, st.indexed = true, r, t
		case st.row == nil:
			st.row, st.indexed = r, t
		}
	case decode.CollectionLike, decode.CollectionRepost, decode.CollectionFollow, decode.CollectionBlock:
		tab := pairTable(col)
		i := tab - TableLikes
		deleteURI := func() { // the op's delete, or an update's delete half
			u.pairs[i] = append(u.pairs[i], pairOp{pos: pos, del: true, uri: op.URI, uh: uriHash(tab, op.URI)})
		}
		if del {
			deleteURI()
			return
		}
		var key pairKey
		var created time.Time
		var named string // the other DID the op names
		var cols [2]string
		switch {
		case op.Like != nil && (col == decode.CollectionLike || col == decode.CollectionRepost):
			key, created = pairKey{op.Like.UserDID, op.Like.PostURI}, op.Like.CreatedAt
			named = uriDID(op.Like.PostURI)
			cols = [2]string{"user_did", "post_uri"}
		case op.Follow != nil && col == decode.CollectionFollow:
			key, created, named = pairKey{op.Follow.ActorDID, op.Follow.SubjectDID}, op.Follow.CreatedAt, op.Follow.SubjectDID
			cols = [2]string{"follower_did", "following_did"}
		case op.Follow != nil && col == decode.CollectionBlock:
			key, created, named = pairKey{op.Follow.ActorDID, op.Follow.SubjectDID}, op.Follow.CreatedAt, op.Follow.SubjectDID
			cols = [2]string{"blocker_did", "blocked_did"}
		default:
			if update {
				deleteURI()
			}
			return // the record did not decode: counted by decode
		}
		name := tab.String()
		if !p.lim.fits(name, "uri", op.URI) || !p.lim.fits(name, cols[0], key.a) || !p.lim.fits(name, cols[1], key.b) ||
			(named != "" && !p.lim.fits("users", "did", named)) {
			p.skip(c, ev.Seq, ReasonTooLong, op.URI, name)
			if update && p.lim.fits(name, "uri", op.URI) {
				deleteURI()
			}
			return
		}
		if named != "" {
			u.ensure(named, t)
		}
		if created.IsZero() {
			created = t
		}
		if op.Action == decode.ActionUpdate {
			deleteURI()
		}
		u.pairs[i] = append(u.pairs[i], pairOp{pos: pos, uri: op.URI, key: key, created: created.UTC(), indexed: t,
			uh: uriHash(tab, op.URI), ph: pairHash(tab, key)})
	case decode.CollectionProfile:
		if op.Rkey != "self" {
			p.skip(c, ev.Seq, decode.ReasonOtherCollection, op.URI, "profile rkey is not self")
			return
		}
		if del {
			u.profiles[ev.DID] = &profileSet{did: ev.DID, uri: op.URI}
			return
		}
		r := op.Profile
		if r == nil {
			if update {
				u.profiles[ev.DID] = &profileSet{did: ev.DID, uri: op.URI}
			}
			return // the record did not decode: counted by decode
		}
		ps := &profileSet{did: ev.DID, uri: op.URI, description: r.Description, avatar: r.AvatarCID, banner: r.BannerCID, pinned: r.PinnedPost, record: r.Record}
		if r.DisplayName != nil {
			dn := *r.DisplayName
			if n, ok := p.lim.limit("users", "display_name"); ok && !p.lim.fits("users", "display_name", dn) {
				dn = truncateRunes(dn, n)
				p.skip(c, ev.Seq, ReasonTruncated, op.URI, "users.display_name")
			}
			ps.displayName = &dn
		}
		u.profiles[ev.DID] = ps
	}
}

func pairTable(c decode.Collection) Table {
	switch c {
	case decode.CollectionLike:
		return TableLikes
	case decode.CollectionRepost:
		return TableReposts
	case decode.CollectionFollow:
		return TableFollows
	}
	return TableBlocks
}

// uriDID returns the DID authority of an at:// URI, or "" when the authority is not a DID.
func uriDID(uri string) string {
	rest, ok := strings.CutPrefix(uri, "at://")
	if !ok {
		return ""
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	if !strings.HasPrefix(rest, "did:") || len(rest) <= len("did:") {
		return ""
	}
	return rest
}

func truncateRunes(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

// bound keeps log fields from untrusted input short.
func bound(s string) string {
	const n = 200
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) && len(s) > 0 {
		s = s[:len(s)-1]
	}
	return s + "..."
}
