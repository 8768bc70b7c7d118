package decode

import "time"

// Kind is the type of a firehose event.
type Kind uint8

// Event kinds, from the frame header's op and t.
const (
	KindUnknown  Kind = iota // a message type this tool does not know
	KindCommit               // #commit
	KindIdentity             // #identity
	KindAccount              // #account
	KindSync                 // #sync
	KindInfo                 // #info
	KindError                // an error frame (op -1)
)

// String returns the kind's name as the firehose spells it.
func (k Kind) String() string {
	switch k {
	case KindCommit:
		return "#commit"
	case KindIdentity:
		return "#identity"
	case KindAccount:
		return "#account"
	case KindSync:
		return "#sync"
	case KindInfo:
		return "#info"
	case KindError:
		return "error"
	}
	return "unknown"
}

// Action is what a commit op does to a record.
type Action uint8

// Op actions.
const (
	ActionCreate Action = iota + 1
	ActionUpdate
	ActionDelete
)

// String returns the action's firehose name.
func (a Action) String() string {
	switch a {
	case ActionCreate:
		return "create"
	case ActionUpdate:
		return "update"
	case ActionDelete:
		return "delete"
	}
	return "invalid"
}

// Collection is one of the record types that load writes.
type Collection uint8

// The collections of SCHEMA.md. CollectionOther is any other NSID: counted, never written.
const (
	CollectionOther   Collection = iota
	CollectionPost               // app.bsky.feed.post -> posts
	CollectionLike               // app.bsky.feed.like -> likes
	CollectionRepost             // app.bsky.feed.repost -> reposts
	CollectionFollow             // app.bsky.graph.follow -> follows
	CollectionBlock              // app.bsky.graph.block -> blocks
	CollectionProfile            // app.bsky.actor.profile (rkey self) -> users
	NumCollections               // the number of Collection values
)

// Header is what fetch needs from a frame without decoding its body: the header fields and the
// event's seq, time and DID. Frames without a seq (#info, error frames) have Seq 0 and HasSeq false.
type Header struct {
	Op        int64     // 1 for a message, -1 for an error frame
	Type      string    // "#commit", "#identity", ...; empty for error frames
	Kind      Kind      // Type as a Kind
	Seq       int64     // the event's seq, 0 when absent
	HasSeq    bool      // whether the body carried a seq
	Time      time.Time // the event's time, zero when absent or unparseable
	DID       string    // repo (commit) or did (other kinds); empty when absent
	ErrorName string    // for error frames: the error field (FutureCursor, ConsumerTooSlow, ...)
	Message   string    // for error frames and #info: the message field
	InfoName  string    // for #info: the name field (OutdatedCursor, ...)
}

// Event is one decoded firehose event with the rows it produces. Every value a loader stores
// is storable as it is: strings (the DID, handle, status, URIs, CIDs, the rows' text) are valid
// UTF-8 without NUL bytes, and JSON documents (Embed, Facets, Tags, PinnedPost, Record) parse
// and hold no NUL, escaped or not (PostgreSQL's jsonb rejects \u0000). The decoder cleans or
// rejects what would break this, counted as problems; FuzzDecode checks it on every input.
type Event struct {
	Seq  int64
	Time time.Time // the event's time (UTC); used for indexed_at and as fallback createdAt
	Kind Kind
	DID  string // the repo (commit) or did (identity, account, sync)

	// Commit: one entry per op in the order the commit lists them.
	Ops []Op

	// Identity: the handle when the event carries one (already lower-cased), else nil.
	Handle *string

	// Account: the account's active flag and status ("active" when active and no status given).
	Active bool
	Status string

	// Info: the info name (OutdatedCursor, ...). Error frames: the error name.
	Name string

	// Problems met while decoding this event that did not stop it: each counted by reason.
	Problems []Problem
}

// Op is one record operation of a commit, with its row when the collection is one load writes.
type Op struct {
	Action     Action
	Collection Collection
	NSID       string // the collection NSID from the op path
	Rkey       string
	URI        string // at://<repo>/<nsid>/<rkey>
	CID        string // the record CID for creates and updates; empty for deletes

	// Exactly one of these is set for creates and updates of a known collection whose record
	// decoded; all are nil for deletes and for records that did not decode (see Event.Problems).
	Post    *PostRow
	Like    *SubjectRow // likes and reposts
	Follow  *GraphRow   // follows and blocks
	Profile *ProfileRow
}

// PostRow is a row of posts.
type PostRow struct {
	URI       string
	CID       string
	AuthorDID string
	Text      string
	ParentURI string // empty: NULL
	RootURI   string // empty: NULL
	Embed     []byte // DAG-JSON of the embed; nil: NULL
	Facets    []byte // DAG-JSON of the facets array; nil: NULL
	Tags      []byte // JSON array of the record's tags plus facet #tag features; never nil
	CreatedAt time.Time
}

// SubjectRow is a row of likes or reposts.
type SubjectRow struct {
	URI       string
	UserDID   string
	PostURI   string
	CreatedAt time.Time
}

// GraphRow is a row of follows (ActorDID follows SubjectDID) or blocks (ActorDID blocks SubjectDID).
type GraphRow struct {
	URI        string
	ActorDID   string
	SubjectDID string
	CreatedAt  time.Time
}

// ProfileRow is the profile part of a users row. Nil pointers and slices are NULL.
type ProfileRow struct {
	DID         string
	DisplayName *string
	Description *string
	AvatarCID   *string
	BannerCID   *string
	PinnedPost  []byte // {"uri":...,"cid":...}
	Record      []byte // the whole record as JSON
}

// Reason names why something was skipped or repaired.
type Reason string

// Reasons counted by the decoder. Load keeps the counts per segment.
const (
	ReasonBadFrame        Reason = "bad_frame"        // the frame did not decode
	ReasonBadRecord       Reason = "bad_record"       // a record block did not decode
	ReasonMissingBlock    Reason = "missing_block"    // the op's CID is not in the CAR slice
	ReasonBadCAR          Reason = "bad_car"          // the CAR slice did not parse
	ReasonBadDID          Reason = "bad_did"          // an invalid DID (repo or subject)
	ReasonBadURI          Reason = "bad_uri"          // an invalid at:// URI or op path
	ReasonBadTime         Reason = "bad_time"         // a datetime that did not parse (event time used)
	ReasonCleanedText     Reason = "cleaned_text"     // NUL bytes or invalid UTF-8 removed (repaired)
	ReasonBadAction       Reason = "bad_action"       // an op action that is not create/update/delete
	ReasonUnknownType     Reason = "unknown_type"     // an event type this tool does not know
	ReasonOtherCollection Reason = "other_collection" // a collection load does not write
	ReasonFiltered        Reason = "filtered"         // excluded by --collections
	ReasonDroppedField    Reason = "dropped_field"    // a field without JSON stored as NULL, the record kept (repaired)
)

// Problem is one counted decode outcome, with the uri (or DID) it concerns for debug logs.
type Problem struct {
	Reason  Reason
	Subject string // uri or DID, bounded in length
	Detail  string // a short error text, bounded in length
}
