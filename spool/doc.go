// Package spool stores opaque frames, each with an int64 seq and an event time, in append-only,
// zstd-compressed, self-describing segment files, plus a bbolt index that only caches what the
// files say. It knows nothing of what the frames contain.
//
// A spool directory holds frames of one relay:
//
//	<dir>/segments/<first seq %020d>.seg   sealed segments, never modified again
//	<dir>/segments/<first seq %020d>.open  the segment being written (at most one)
//	<dir>/index.db                         bbolt cache of the sealed segments' trailers
//
// The byte layout is in docs/FORMAT.md. A segment is a header, chunks of records (each chunk one
// zstd frame, the unit of durability) and, once sealed, a trailer and a fixed-size footer. A torn
// tail (an incomplete or invalid last chunk of the open segment) is truncated when a writer
// recovers; any other bad checksum is an error wrapping ErrCorrupt that names file and offset.
//
// Files:
//   - format.go: byte layout (header, chunk header, record, trailer, footer), errors.
//   - chunk.go: reading and validating one chunk; the torn-tail versus corruption test.
//   - reader.go: Reader and OpenSegment for sealed segments, ListSegments, SegmentInfo.
//   - scan.go: the torn-tail-tolerant scan of an open segment (recovery, Tail, Verify).
//   - writer.go: Writer: append, chunk cutting, rolling, sealing, recovery.
//   - spool.go: Spool, Options, the bbolt index, Reindex, Tail.
//   - verify.go: Verify.
//
// Concurrency: Spool methods are safe for concurrent use; a Spool has at most one Writer, whose
// methods must be called from one goroutine (Stats excepted: it is atomic). Options.OnSeal runs
// on the writer's goroutine. A Reader is for one goroutine. ListSegments, OpenSegment and Verify
// need no index and no lock, so they work while another process writes the spool: sealed files
// appear by atomic rename once complete, and the open one is read as a torn-tail-tolerant tail.
// The package starts no goroutines and never logs.
//
// Memory: a writer holds the pending chunk and its compressed copy; a reader holds one compressed
// and one raw chunk. A chunk is cut once it reaches Options.ChunkBytes, so it can exceed it by one
// frame (at most MaxFrameBytes).
package spool
