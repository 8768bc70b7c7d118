// Package decode turns raw com.atproto.sync.subscribeRepos frames into the rows that load
// writes. It is pure: no I/O, no logging, no goroutines; untrusted input never panics it, and
// what it skips or repairs is returned as counted Problems, never logged.
//
// Files:
//   - types.go: the contract shared with loader (Event, Op, the row types, Reason, Problem).
//   - header.go: PeekHeader, the allocation-free header and seq/time/DID scan used by fetch.
//   - decoder.go: Decoder and Options; the envelope of each event type and the per-op checks
//     of a commit.
//   - commit.go: the #commit envelope scanner, which accepts what indigo's cbor-gen type does.
//   - records.go: records to rows; embed, facets and profile JSON.
//   - lean.go: the readers of posts, likes, reposts, follows and blocks, which accept what
//     indigo's cbor-gen types do; embed.go: the check of a post's embed, table-driven.
//   - json.go: the DAG-CBOR to atproto JSON transcoder (what atdata and json.Marshal give).
//   - car.go: the walk of a commit's CAR slice and its CID lookup (no MST is loaded).
//   - cid.go: go-cid's check of a binary CID and its string form, without allocating.
//   - cbor.go: a minimal bounds-checked DAG-CBOR reader and skipper.
//   - syntax.go: fast paths for datetimes, NSIDs, record keys and at:// URIs that agree with
//     indigo's syntax package and fall back to it.
//   - text.go: the cleaning of NUL and invalid UTF-8, and the bounds of Problem fields.
//
// Replacing indigo: the frame header, #commit envelopes, error frames and five of the six
// record types are read by hand, the same input accepted and rejected as indigo's generated
// code does (diff_test.go fuzzes each against it); identity, account, sync and info bodies and
// profile records still go through indigo's cbor-gen types, which cost little there. Embed,
// facets and profile JSON are transcoded straight from the record's CBOR (json.go), byte for
// byte what json.Marshal gives for indigo's types and for atdata's generic decoding; where the
// transcoder rejects an embed or facets, the typed and then generic JSON of before are used;
// where none of them has JSON for it (data outside the atproto data model that indigo's types
// ignore), the field is NULL and the record kept (ReasonDroppedField), as is a profile whose
// record has no JSON (profile_record NULL, the other columns set).
//
// Concurrency: PeekHeader is safe for concurrent use. A Decoder reuses buffers between calls
// and is not: use one per worker. Events share no memory with the Decoder or the frame, so
// both may be reused once Decode returns.
//
// Ops and rows: every op of a commit yields one Op, in order. An op with a problem (bad path,
// bad action, other collection, filtered collection, missing block, bad record, bad subject)
// has no row; a delete never has one. A row survives a bad createdAt (the event time stands in,
// ReasonBadTime), a bad reply URI (left empty, ReasonBadURI), cleaned text (ReasonCleanedText,
// at most one per op) and a field without JSON (NULL, ReasonDroppedField). A filtered op keeps
// its Collection, deletes too: a loader must not apply deletes of collections it filters. An
// op whose path is bad has Collection Other and no URI; one whose action is bad has Action 0.
// A profile op whose rkey is not "self" has Collection Other. An event whose DID does not parse
// has a ReasonBadDID problem (its DID cleaned); a commit with one has no ops. The frame header
// is read by hand (cbor.go) for Decode and PeekHeader alike, and so are error frames ({error,
// message}), so that this package need not import indigo's events package and its metrics.
package decode
