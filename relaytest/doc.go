// Package relaytest is an in-process test relay: it serves com.atproto.sync.subscribeRepos over
// a real websocket on 127.0.0.1 from a log of events it generates with indigo's own repository,
// MST and signing code, and it knows what the AppView tables must hold after any range of that
// log (Model).
//
// Files:
//   - relay.go: Config, New, Relay's accessors, Append and the live generator; the log.
//   - serve.go: the websocket endpoint: cursor handling, replay then live tail, fault injection.
//   - faults.go: Faults, the queue of misbehaviours for the next connections.
//   - gen.go: the generator: accounts, their repositories, the choice of events and ops, commits.
//   - records.go: record content (posts, facets, embeds, profiles, ...) and bad input.
//   - repo.go: MST diff and proof blocks, signing, CAR v1 writing.
//   - frames.go: frame encoding (headers, error and #info frames, websocket framing).
//   - script.go: AppendCommit and friends, for hand-built scenarios.
//   - model.go: Model, the expected rows, built from frames with indigo's decoders only.
//
// Generation is deterministic: the same Config (with StartTime set) gives identical bytes. It
// runs on one goroutine for the repositories and up to GOMAXPROCS for signing and framing.
//
// Concurrency: every exported method of Relay and Faults is safe for concurrent use. Generation
// (New, Append, the live generator, the Append* scripts) is serialized by one mutex; each
// connection is served by its own goroutine that reads the shared, append-only log. Frames in
// the log are immutable and shared: callers must not modify Frame.Bytes. A Model is a plain
// value, not safe for concurrent mutation.
//
// Replay writes the prepared frame bytes with websocket framing done here, many frames per
// write, rather than through gorilla's writer (one syscall per message); gorilla only reads.
//
// Model semantics (the loader's contract): see Model and Apply. The model imports package
// decode for its row types only and never calls it.
package relaytest
