// Package decode turns raw com.atproto.sync.subscribeRepos frames into the rows that load
// writes. It is pure: no I/O, no logging, no goroutines; untrusted input never panics it, and
// what it skips or repairs is returned as counted Problems, never logged.
//
// Files:
//   - types.go: the contract shared with loader (Event, Op, the row types, Reason, Problem).
//   - header.go: PeekHeader, the allocation-free header and seq/time/DID scan used by fetch.
//   - decoder.go: Decoder and Options; the envelope of each event type (indigo's cbor-gen
//     types) and the per-op checks of a commit.
//   - records.go: records (indigo's bsky types) to rows; embed, facets and profile JSON.
//   - car.go: the walk of a commit's CAR slice and its CID lookup (no MST is loaded).
//   - cbor.go: a minimal bounds-checked DAG-CBOR reader and skipper.
//   - syntax.go: fast paths for datetimes, NSIDs, record keys and at:// URIs that agree with
//     indigo's syntax package and fall back to it.
//   - text.go: the cleaning of NUL and invalid UTF-8, and the bounds of Problem fields.
//
// Concurrency: PeekHeader is safe for concurrent use. A Decoder reuses buffers between calls
// and is not: use one per worker. Events share no memory with the Decoder or the frame, so
// both may be reused once Decode returns.
//
// Ops and rows: every op of a commit yields one Op, in order. An op with a problem (bad path,
// bad action, other collection, filtered collection, missing block, bad record, bad subject)
// has no row; a delete never has one. A row survives a bad createdAt (the event time stands in,
// ReasonBadTime), a bad reply URI (left empty, ReasonBadURI) and cleaned text
// (ReasonCleanedText, at most one per op). A filtered op keeps its Collection, deletes too: a
// loader must not apply deletes of collections it filters. An op whose path is bad has
// Collection Other and no URI; one whose action is bad has Action 0. A profile op whose rkey
// is not "self" has Collection Other. An event whose DID does not parse has a ReasonBadDID
// problem (its DID cleaned); a commit with one has no ops. The frame header is read by hand
// (cbor.go) for Decode and PeekHeader alike; bodies go through indigo's cbor-gen types, except
// error frames ({error, message}), read by hand so that this package need not import indigo's
// events package and its metrics.
package decode
