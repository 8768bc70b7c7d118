// Package loader bulk-loads spool segments into the AppView's PostgreSQL: it decodes frames
// (package decode), reduces each unit of segments in memory to set-based statements, and
// commits each unit in one transaction together with its progress, so that a unit is either
// wholly visible or not at all and a reload never applies anything twice.
//
// Files:
//   - config.go: Config, RetryPolicy, defaults and checks, RedactDSN.
//   - loader.go: Loader, Open, Close, the connection and the advisory lock.
//   - schema.go: the DDL of SCHEMA.md plus the tool's backfill_* tables, index reuse, the
//     column check and the varchar limits it reads.
//   - run.go: Run: the spool listing (and following), the read/decode/plan stage with its
//     decode workers, the writer, retries and reconnects.
//   - sanitize.go: the last guard against values PostgreSQL cannot store.
//   - plan.go: the in-memory application of a unit's events in seq order (filters, marks, users
//     ensured, last-wins profiles, handles and accounts, posts collapsed by uri).
//   - phase.go: the cut of a pair table's ops (likes, reposts, follows, blocks) into phases
//     whose set-based application equals sequential application; the proof is in its comment.
//   - write.go: one unit's transaction: staging COPY, statements, bookkeeping, commit.
//   - helpers_test.go, model_test.go: frame builders, a spool writer, and the sequential
//     reference model (one event at a time, maps) that the tests compare the database with.
//   - retry.go: which database errors are transient.
//   - stats.go: Stats (live counters), Summary (one Run), table names and skip reasons.
//
// Semantics: the database after a load equals applying every event in seq order, one at a
// time, with the rules of SCHEMA.md. Choices the contract leaves open: Since is inclusive and
// Until exclusive; an event without a time takes the previous event's time in seq order (across
// segments and runs, through backfill_loader.event_time), and is skipped as no_time when there
// is none; an update whose new record did not decode is skipped whole (the old row stays); the
// repo DID of a commit is ensured in users even when all its ops are skipped or filtered; the DID
// of a like's or repost's subject is ensured only when the subject URI's authority is a DID;
// identifiers longer than their column are skipped (too_long) and a too long display name is
// cut (truncated), instead of failing the transaction on every retry.
//
// Units and --batch-size: a unit is consecutive sealed segments loaded in one transaction.
// BatchSize is the most segments one unit takes once it holds at least 1 MiB of raw frames, and
// a unit never grows past 8 MiB (a larger segment, such as the spool's default 64 MiB one, is a
// unit of its own). A transaction costs about 7 ms of round trips and fsync whatever it holds,
// so the 1 MiB floor keeps BatchSize 1 from crippling a load of small (time-sealed) segments;
// the 8 MiB cap keeps the decoder and the writer overlapping. With default segments BatchSize
// changes nothing; larger values help only with many small segments.
//
// Write path, per unit: one round trip reads the pairs of pre-existing rows the phase cut needs;
// COPY (binary) fills TEMP staging tables created once per connection (ON COMMIT DELETE ROWS);
// one pipelined batch runs the set-based statements (users ensured, profiles and handles set,
// accounts upserted, posts and pair tables deleted then inserted phase by phase, cursor and
// high-water mark); a second records the segments; then COMMIT. Inserts whose staged rows are
// pairwise distinct on every unique key (users, posts, and unordered phases) skip existing keys
// with NOT EXISTS anti-joins, which avoids ON CONFLICT's speculative insertion; the others, the
// tables carrying unique indexes beyond SCHEMA.md's, and a unit retried after a unique violation
// (a concurrent writer) use INSERT ... ORDER BY pos ON CONFLICT DO NOTHING. Hash and merge joins
// and JIT are off in these transactions: staging tables have no statistics, and index probes
// are what the statements need. DIDs ensured by an earlier commit of the same run are not
// ensured again (users rows are never deleted by the loader; the memory is bounded and reset
// at each Run).
//
// Progress: a segment in backfill_segments (same relay, first and last seq, checksum) is never
// loaded again, and frames at or below the relay's high-water mark (backfill_loader) are skipped,
// so a spool re-fetched with other segment boundaries loads only what is new. The
// firehose_cursor row of Config.Service holds the last loaded seq, written in the same
// transaction. Transient errors (lost connection, server restart, serialization failure,
// deadlock) roll the unit back and retry it on a new connection with jittered backoff.
//
// Concurrency: one Loader owns one connection, which holds a session advisory lock: a second
// loader on the same database fails in Open with ErrLocked. Run runs one reading goroutine,
// Config.Workers decode goroutines (one decode.Decoder each) and one writer; the reader works
// on the next unit while the writer commits the current one, at most two units ahead. Run and
// Close must not overlap; Stats may be read from any goroutine at any time. The package never
// logs except debug lines for skipped input to Config.Logger.
package loader
