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
// The byte layout is in docs/FORMAT.md. A segment is a header, chunks of records and, once
// sealed, an end chunk, a trailer and a fixed-size footer. The records of a segment are one zstd
// stream (one frame, so matches reach back across chunks); a chunk is the piece of that stream
// the encoder emits when it ends its current block, so it is the unit of durability and every
// prefix of complete chunks decodes. A torn tail (an incomplete or invalid last chunk of the open
// segment) is truncated when a writer recovers, and the segment is sealed as it is, since the
// encoder's history is gone; any other bad checksum is an error wrapping ErrCorrupt that names
// file and offset.
//
// Files:
//   - format.go: byte layout (header, chunk header, record, trailer, footer), errors.
//   - chunk.go: reading and validating chunks, decoding their payloads as one stream; the
//     torn-tail versus corruption test.
//   - reader.go: Reader and OpenSegment for sealed segments, ListSegments, SegmentInfo.
//   - scan.go: the torn-tail-tolerant scan of an open segment (recovery, Tail, Verify).
//   - writer.go: Writer: append, streaming compression, chunk cutting, rolling, sealing, recovery.
//   - spool.go: Spool, Options, the bbolt index, Reindex, Tail.
//   - verify.go: Verify.
//
// Concurrency: Spool methods are safe for concurrent use; a Spool has at most one Writer, whose
// methods must be called from one goroutine (Stats excepted: it is atomic). Options.OnSeal runs
// on the writer's goroutine. A Reader is for one goroutine. ListSegments, OpenSegment and Verify
// need no index and no lock, so they work while another process writes the spool: sealed files
// appear by atomic rename once complete, and the open one is read as a torn-tail-tolerant tail.
// The package never logs and starts no goroutines of its own; the writer's zstd encoder
// compresses a block on its own goroutines while Append fills the next one, and Flush waits for
// them.
//
// Memory: a writer holds the encoder (its 8 MiB window and tables) and the compressed bytes of
// the chunk being built; a reader holds the decoder's history (the frame's window, at most 8 MiB,
// which bounds what a hostile file can make it allocate), one compressed and one raw chunk. A
// chunk is cut once it reaches Options.ChunkBytes raw bytes, so it can exceed it by one frame (at
// most MaxFrameBytes). A closed OpenSegment reader leaves its decoder and chunk buffers to the
// next one (a free list of up to eight, as many as were open at once), so the package keeps what
// its readers held at most.
package spool
