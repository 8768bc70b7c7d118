package relaytest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"time"

	"github.com/backfill/backfill/decode"
	comatproto "github.com/bluesky-social/indigo/api/atproto"
	"github.com/bluesky-social/indigo/api/bsky"
	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/bluesky-social/indigo/events"
	"github.com/ipfs/go-cid"
	"github.com/ipld/go-car"
)

// UserRow is a row of users. Nil pointers and slices are NULL; JSON columns are compact JSON.
type UserRow struct {
	DID           string
	Handle        string
	DisplayName   *string
	Description   *string
	AvatarURL     *string // the avatar blob CID
	BannerURL     *string // the banner blob CID
	PinnedPost    []byte  // {"uri": ..., "cid": ...}
	ProfileRecord []byte  // the whole profile record
	CreatedAt     time.Time
	IndexedAt     time.Time
}

// PostRow is a row of posts.
type PostRow struct {
	decode.PostRow
	IndexedAt time.Time
}

// SubjectRow is a row of likes or reposts.
type SubjectRow struct {
	decode.SubjectRow
	IndexedAt time.Time
}

// GraphRow is a row of follows or blocks.
type GraphRow struct {
	decode.GraphRow
	IndexedAt time.Time
}

// AccountRow is a row of backfill_accounts: the last #account event seen for a DID.
type AccountRow struct {
	DID    string
	Active bool
	Status string // the event's status; "active" when active and none given
	Seq    int64
	Time   time.Time
}

// Model is what the AppView tables must hold after applying a range of events in seq order,
// by the rules of SCHEMA.md. It decodes frames with indigo's own types, never with package
// decode, and applies them one event at a time with plain maps. The rules:
//
//   - create: insert, unless a row has the uri, or (likes, reposts) the same (user_did,
//     post_uri), or (follows, blocks) the same (actor, subject): then nothing happens.
//   - update: the row at the uri is removed, then the create rule applies to the new record;
//     when the new record is bad (see below) the old row is gone and nothing replaces it.
//   - delete: the row at the uri is removed, if any.
//   - profile (rkey "self" only; other rkeys are another collection): create and update ensure
//     the users row and set the six profile columns to the record's values (NULL where absent);
//     delete sets them NULL.
//   - users: every DID an event names (commit repo, #identity/#account/#sync did, follow and
//     block subjects, the DID authority of like and repost subject uris) gets a row, handle
//     'handle.invalid', created_at = indexed_at = the first event in the range naming it.
//     #identity with a handle sets it, lower-cased.
//   - #account: accounts[did] = the last event's active, status ("active" when active and none
//     given), seq and time.
//   - bad input gives no row for that op: a record that does not decode as its type, a block
//     missing from the CAR, a like/repost subject that is not an at:// URI with a DID
//     authority, a follow/block subject that is not a DID. An unparseable createdAt gives the
//     event's time. Garbage frames, #info and unknown types give nothing.
//   - times are UTC, truncated to microseconds; createdAt is parsed with
//     syntax.ParseDatetimeLenient. Every stored string, including inside JSON, is Clean'ed
//     before use (post tags are de-duplicated after cleaning). JSON columns are json.Marshal
//     of indigo's typed values as decoded from the record; an embed union of an unknown type
//     has no JSON and is NULL.
type Model struct {
	Users    map[string]UserRow    // by DID
	Posts    map[string]PostRow    // by uri
	Likes    map[string]SubjectRow // by uri
	Reposts  map[string]SubjectRow // by uri
	Follows  map[string]GraphRow   // by uri
	Blocks   map[string]GraphRow   // by uri
	Accounts map[string]AccountRow // by DID

	Events   map[string]int        // frames applied, by Frame.Kind
	Problems map[decode.Reason]int // what was skipped or defaulted (see Apply)
	LastSeq  int64                 // seq of the last frame applied (the cursor to store)
	LastTime time.Time             // its time

	likePairs, repostPairs, followPairs, blockPairs map[[2]string]string // pair -> uri
	ignored                                         map[string]int       // creates left as is: "uri <nsid>" or "pair <nsid>"
}

// NewModel returns an empty model.
func NewModel() *Model {
	return &Model{
		Users:       map[string]UserRow{},
		Posts:       map[string]PostRow{},
		Likes:       map[string]SubjectRow{},
		Reposts:     map[string]SubjectRow{},
		Follows:     map[string]GraphRow{},
		Blocks:      map[string]GraphRow{},
		Accounts:    map[string]AccountRow{},
		Events:      map[string]int{},
		Problems:    map[decode.Reason]int{},
		likePairs:   map[[2]string]string{},
		repostPairs: map[[2]string]string{},
		followPairs: map[[2]string]string{},
		blockPairs:  map[[2]string]string{},
		ignored:     map[string]int{},
	}
}

// Model returns the expected database after applying every event with from <= seq <= to.
func (r *Relay) Model(from, to int64) *Model {
	m := NewModel()
	for _, f := range r.Log() {
		if f.Seq >= from && f.Seq <= to {
			m.Apply(f)
		}
	}
	return m
}

// Clean is how every stored string is repaired: NUL bytes removed, invalid UTF-8 replaced.
func Clean(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
}

// Apply applies one frame. Problems counts, per op or frame: bad_frame (does not decode),
// unknown_type, bad_car, missing_block, bad_record (record does not decode as its type),
// bad_uri (like/repost subject not an at:// URI with a DID authority), bad_did (follow/block
// subject not a DID), bad_time (a non-empty createdAt that does not parse; event time used),
// bad_action and other_collection (including profiles whose rkey is not "self").
func (m *Model) Apply(f Frame) {
	m.Events[f.Kind]++
	m.LastSeq, m.LastTime = f.Seq, f.Time
	var evt events.XRPCStreamEvent
	if err := evt.Deserialize(bytes.NewReader(f.Bytes)); err != nil {
		m.Problems[decode.ReasonBadFrame]++
		return
	}
	switch {
	case evt.RepoCommit != nil:
		m.commit(evt.RepoCommit)
	case evt.RepoIdentity != nil:
		e := evt.RepoIdentity
		m.ensureUser(e.Did, eventTime(e.Time))
		if e.Handle != nil {
			u := m.Users[e.Did]
			u.Handle = strings.ToLower(Clean(*e.Handle))
			m.Users[e.Did] = u
		}
	case evt.RepoAccount != nil:
		e := evt.RepoAccount
		t := eventTime(e.Time)
		m.ensureUser(e.Did, t)
		status := ""
		if e.Status != nil {
			status = Clean(*e.Status)
		} else if e.Active {
			status = "active"
		}
		m.Accounts[e.Did] = AccountRow{DID: e.Did, Active: e.Active, Status: status, Seq: e.Seq, Time: t}
	case evt.RepoSync != nil:
		m.ensureUser(evt.RepoSync.Did, eventTime(evt.RepoSync.Time))
	case evt.RepoInfo != nil, evt.Error != nil:
	default:
		m.Problems[decode.ReasonUnknownType]++
	}
}

// eventTime parses an event's time at PostgreSQL's precision.
func eventTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// createdAt parses a record's createdAt leniently, falling back to the event's time.
func (m *Model) createdAt(s string, t time.Time) time.Time {
	if s == "" {
		return t
	}
	d, err := syntax.ParseDatetimeLenient(s)
	if err != nil {
		m.Problems[decode.ReasonBadTime]++
		return t
	}
	return d.Time().UTC().Truncate(time.Microsecond)
}

func (m *Model) ensureUser(did string, t time.Time) {
	if _, ok := m.Users[did]; !ok {
		m.Users[did] = UserRow{DID: did, Handle: "handle.invalid", CreatedAt: t, IndexedAt: t}
	}
}

// readCAR returns the CAR's blocks by CID; on a parse error, the blocks read before it.
func readCAR(b []byte) (map[cid.Cid][]byte, error) {
	out := map[cid.Cid][]byte{}
	cr, err := car.NewCarReader(bytes.NewReader(b))
	if err != nil {
		return out, err
	}
	for {
		blk, err := cr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out[blk.Cid()] = blk.RawData()
	}
}

func (m *Model) commit(c *comatproto.SyncSubscribeRepos_Commit) {
	t := eventTime(c.Time)
	m.ensureUser(c.Repo, t)
	blocks, err := readCAR(c.Blocks)
	if err != nil {
		m.Problems[decode.ReasonBadCAR]++
	}
	for _, op := range c.Ops {
		if op == nil {
			m.Problems[decode.ReasonBadAction]++
			continue
		}
		coll, rkey, _ := strings.Cut(op.Path, "/")
		uri := "at://" + c.Repo + "/" + op.Path
		known := coll == collPost || coll == collLike || coll == collRepost || coll == collFollow || coll == collBlock || (coll == collProfile && rkey == "self")
		if !known {
			m.Problems[decode.ReasonOtherCollection]++
			continue
		}
		switch op.Action {
		case "create":
			m.create(coll, uri, c.Repo, op, blocks, t)
		case "update":
			m.remove(coll, uri, c.Repo)
			m.create(coll, uri, c.Repo, op, blocks, t)
		case "delete":
			m.remove(coll, uri, c.Repo)
		default:
			m.Problems[decode.ReasonBadAction]++
		}
	}
}

// remove applies a delete (and the first half of an update).
func (m *Model) remove(coll, uri, repo string) {
	switch coll {
	case collPost:
		delete(m.Posts, uri)
	case collLike:
		if row, ok := m.Likes[uri]; ok {
			delete(m.likePairs, [2]string{row.UserDID, row.PostURI})
			delete(m.Likes, uri)
		}
	case collRepost:
		if row, ok := m.Reposts[uri]; ok {
			delete(m.repostPairs, [2]string{row.UserDID, row.PostURI})
			delete(m.Reposts, uri)
		}
	case collFollow:
		if row, ok := m.Follows[uri]; ok {
			delete(m.followPairs, [2]string{row.ActorDID, row.SubjectDID})
			delete(m.Follows, uri)
		}
	case collBlock:
		if row, ok := m.Blocks[uri]; ok {
			delete(m.blockPairs, [2]string{row.ActorDID, row.SubjectDID})
			delete(m.Blocks, uri)
		}
	case collProfile:
		u := m.Users[repo]
		u.DisplayName, u.Description, u.AvatarURL, u.BannerURL, u.PinnedPost, u.ProfileRecord = nil, nil, nil, nil, nil, nil
		m.Users[repo] = u
	}
}

// create applies a create (and the second half of an update).
func (m *Model) create(coll, uri, repo string, op *comatproto.SyncSubscribeRepos_RepoOp, blocks map[cid.Cid][]byte, t time.Time) {
	if op.Cid == nil {
		m.Problems[decode.ReasonMissingBlock]++
		return
	}
	data, ok := blocks[cid.Cid(*op.Cid)]
	if !ok {
		m.Problems[decode.ReasonMissingBlock]++
		return
	}
	recCID := op.Cid.String()
	switch coll {
	case collPost:
		var rec bsky.FeedPost
		if !m.decodeRecord(&rec, data) {
			return
		}
		row := decode.PostRow{URI: uri, CID: recCID, AuthorDID: repo, Text: rec.Text, CreatedAt: m.createdAt(rec.CreatedAt, t)}
		if rec.Reply != nil && rec.Reply.Parent != nil {
			row.ParentURI = rec.Reply.Parent.Uri
		}
		if rec.Reply != nil && rec.Reply.Root != nil {
			row.RootURI = rec.Reply.Root.Uri
		}
		if rec.Embed != nil {
			row.Embed = marshalJSON(rec.Embed)
		}
		if len(rec.Facets) > 0 {
			row.Facets = marshalJSON(rec.Facets)
		}
		row.Tags = postTags(&rec)
		if _, exists := m.Posts[uri]; exists {
			m.ignored["uri "+coll]++
			return
		}
		m.Posts[uri] = PostRow{PostRow: row, IndexedAt: t}
	case collLike, collRepost:
		var subject *comatproto.RepoStrongRef
		var created string
		if coll == collLike {
			var rec bsky.FeedLike
			if !m.decodeRecord(&rec, data) {
				return
			}
			subject, created = rec.Subject, rec.CreatedAt
		} else {
			var rec bsky.FeedRepost
			if !m.decodeRecord(&rec, data) {
				return
			}
			subject, created = rec.Subject, rec.CreatedAt
		}
		if subject == nil {
			m.Problems[decode.ReasonBadURI]++
			return
		}
		aturi, err := syntax.ParseATURI(subject.Uri)
		if err != nil {
			m.Problems[decode.ReasonBadURI]++
			return
		}
		author, err := aturi.Authority().AsDID()
		if err != nil {
			m.Problems[decode.ReasonBadURI]++
			return
		}
		m.ensureUser(author.String(), t)
		row := decode.SubjectRow{URI: uri, UserDID: repo, PostURI: subject.Uri, CreatedAt: m.createdAt(created, t)}
		rows, pairs := m.Likes, m.likePairs
		if coll == collRepost {
			rows, pairs = m.Reposts, m.repostPairs
		}
		pair := [2]string{row.UserDID, row.PostURI}
		if _, exists := rows[uri]; exists {
			m.ignored["uri "+coll]++
			return
		}
		if _, exists := pairs[pair]; exists {
			m.ignored["pair "+coll]++
			return
		}
		rows[uri] = SubjectRow{SubjectRow: row, IndexedAt: t}
		pairs[pair] = uri
	case collFollow, collBlock:
		var subject, created string
		if coll == collFollow {
			var rec bsky.GraphFollow
			if !m.decodeRecord(&rec, data) {
				return
			}
			subject, created = rec.Subject, rec.CreatedAt
		} else {
			var rec bsky.GraphBlock
			if !m.decodeRecord(&rec, data) {
				return
			}
			subject, created = rec.Subject, rec.CreatedAt
		}
		if _, err := syntax.ParseDID(subject); err != nil {
			m.Problems[decode.ReasonBadDID]++
			return
		}
		m.ensureUser(subject, t)
		row := decode.GraphRow{URI: uri, ActorDID: repo, SubjectDID: subject, CreatedAt: m.createdAt(created, t)}
		rows, pairs := m.Follows, m.followPairs
		if coll == collBlock {
			rows, pairs = m.Blocks, m.blockPairs
		}
		pair := [2]string{row.ActorDID, row.SubjectDID}
		if _, exists := rows[uri]; exists {
			m.ignored["uri "+coll]++
			return
		}
		if _, exists := pairs[pair]; exists {
			m.ignored["pair "+coll]++
			return
		}
		rows[uri] = GraphRow{GraphRow: row, IndexedAt: t}
		pairs[pair] = uri
	case collProfile:
		var rec bsky.ActorProfile
		if !m.decodeRecord(&rec, data) {
			return
		}
		u := m.Users[repo]
		u.DisplayName, u.Description = rec.DisplayName, rec.Description
		u.AvatarURL, u.BannerURL, u.PinnedPost = nil, nil, nil
		if rec.Avatar != nil {
			s := rec.Avatar.Ref.String()
			u.AvatarURL = &s
		}
		if rec.Banner != nil {
			s := rec.Banner.Ref.String()
			u.BannerURL = &s
		}
		if rec.PinnedPost != nil {
			u.PinnedPost = marshalJSON(struct {
				URI string `json:"uri"`
				CID string `json:"cid"`
			}{rec.PinnedPost.Uri, rec.PinnedPost.Cid})
		}
		u.ProfileRecord = marshalJSON(&rec)
		m.Users[repo] = u
	}
}

// decodeRecord decodes a record block into rec and cleans every string in it.
func (m *Model) decodeRecord(rec interface{ UnmarshalCBOR(io.Reader) error }, data []byte) bool {
	if err := rec.UnmarshalCBOR(bytes.NewReader(data)); err != nil {
		m.Problems[decode.ReasonBadRecord]++
		return false
	}
	cleanStrings(reflect.ValueOf(rec))
	return true
}

// postTags returns the record's tags then its facet #tag features, without repeats, as JSON.
func postTags(rec *bsky.FeedPost) []byte {
	tags := []string{}
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			tags = append(tags, s)
		}
	}
	for _, s := range rec.Tags {
		add(s)
	}
	for _, f := range rec.Facets {
		if f == nil {
			continue
		}
		for _, feat := range f.Features {
			if feat != nil && feat.RichtextFacet_Tag != nil {
				add(feat.RichtextFacet_Tag.Tag)
			}
		}
	}
	return marshalJSON(tags)
}

// marshalJSON returns v as compact JSON, or nil when it has no JSON form (an empty union, as
// indigo leaves it for a $type it does not know).
func marshalJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

// cleanStrings applies Clean to every exported string reachable from v.
func cleanStrings(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			cleanStrings(v.Elem())
		}
	case reflect.Struct:
		t := v.Type()
		for i := range v.NumField() {
			if t.Field(i).IsExported() {
				cleanStrings(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return
		}
		for i := range v.Len() {
			cleanStrings(v.Index(i))
		}
	case reflect.String:
		if v.CanSet() {
			v.SetString(Clean(v.String()))
		}
	}
}
