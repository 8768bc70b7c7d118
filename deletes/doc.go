// Package deletes keeps, next to each sealed spool segment, a small sidecar file: the index of
// the ops its frames carry that end a record's row, deletes and updates (the loader applies an
// update as a delete, then an insert). A row created at seq s and deleted or replaced by a later
// event costs the loader a COPY and a DELETE for nothing; when the loader knows, before writing
// s, that such an op on the same at:// URI comes later, it can leave the row out.
//
// The fetch builds the sidecar while it writes (Collector: each frame is decoded with
// decode.Options{OpsOnly: true}, which reads a commit's ops but not its CAR slice or records);
// Build makes one for a segment written without it; the loader reads it (Read). A missing or
// unreadable sidecar only means "no hints" for that segment, never an error that stops anything:
// correctness never depends on a sidecar being present, only on a present one being right.
//
//	<dir>/segments/<first seq %020d>.seg   a sealed segment (package spool)
//	<dir>/segments/<first seq %020d>.del   its sidecar (Path); the layout is in FORMAT.md
//
// Exactness: an Entry (Seq, Time, Key) means that the frame with spool seq Seq is a #commit
// event that the loader's full decoder (decode.NewDecoder(decode.Options{}).Decode) decodes
// without error, whose body seq equals the spool seq, whose event time is non-zero (and not the
// unix epoch: Time is its unix microseconds, never 0), whose repo DID is valid, and which holds
// an op with Action decode.ActionDelete or decode.ActionUpdate, a Collection among post, like,
// repost, follow, block and profile (the decoder gives that one only to rkey self), and a URI u
// with Key == Key(u). Every such op of such a frame has its entry. Sidecars written before
// profiles were indexed hold no profile entries: a reader may find fewer hints, never a wrong
// one. A Barrier
// is the spool seq of a frame of any kind that decodes with a body seq above its spool seq: the
// loader's high-water mark would jump past the frames after it. A sidecar names its segment
// (first and last seq, body checksum, frame count) and Read refuses one that names another, so a
// sidecar left from an earlier segment at the same path is never taken for this one's.
//
// Files:
//   - format.go: Key, Entry, Index, Path, the byte layout, Read and the atomic write.
//   - collector.go: the indexing rules, Collector (the fetch side) and Build.
//
// Concurrency: a Collector is for one goroutine, like the spool.Writer whose OnSeal it is (OnSeal
// runs on the writer's goroutine). Key, Path, Read and Build are safe for concurrent use. The
// package never logs and starts no goroutines.
//
// Memory: a Collector holds the pending entries and barriers and the runs of seqs added, never
// frames. Read checks the header's counts against the file size before allocating, so a
// hostile file cannot make it allocate more than its own size.
package deletes
