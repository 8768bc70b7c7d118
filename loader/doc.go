// Package loader bulk-loads spool segments into the AppView's PostgreSQL: it decodes frames
// (package decode), reduces each unit of segments in memory to set-based statements, and
// commits each unit in one transaction together with its progress, so that a unit is either
// wholly visible or not at all and a reload never applies anything twice.
//
// Files:
//   - config.go: Config, RetryPolicy, defaults and checks, RedactDSN.
//   - loader.go: Loader, Open, Close, the connections and the advisory lock.
//   - head.go: the head start of the next unit on the second connection, and why it is exact.
//   - schema.go: the DDL of SCHEMA.md plus the tool's backfill_* tables, index reuse, the
//     column check and the varchar limits it reads.
//   - run.go: Run: the spool listing (and following), the read/decode/plan stage with its
//     decode workers, the writer, retries and reconnects.
//   - plan.go: the in-memory application of a unit's events in seq order (filters, marks, users
//     ensured, last-wins profiles, handles and accounts, posts collapsed by uri), and the
//     statements' inputs.
//   - phase.go: the cut of a pair table's ops (likes, reposts, follows, blocks) into phases
//     whose set-based application equals sequential application; the proof is in its comment.
//   - write.go: one unit's transaction: reads, updates and deletes, creates, bookkeeping,
//     commit; the staging path.
//   - direct.go: the direct COPY of creates into their tables (blind or after a probe of the
//     existing keys), why it is exact, and its per-table back-off.
//   - seen.go: the filter of keys the run wrote, whose creates are probed before a blind COPY.
//   - hints.go: the window of the spool's delete index (package deletes) ahead of the planner,
//     and why a create whose record a later delete or update removes can be left out.
//   - pending.go: the pair-table creates left out, remembered (in memory and in
//     backfill_pending's log) until a delete of their uri ends them or a create that meets
//     them makes a unit write them first.
//   - pipe.go: txPipe, a transaction's statements in few round trips: batches, and several
//     COPYs (with their savepoints) in one query.
//   - copy.go: the binary COPY encoding of the loader's few column types.
//   - helpers_test.go, model_test.go: frame builders, a spool writer, and the sequential
//     reference model (one event at a time, maps) that the tests compare the database with.
//   - retry.go: which database errors are transient.
//   - nice_linux.go, nice_other.go: the lower priority of the reading and decoding threads.
//   - stats.go: Stats (live counters), Summary (one Run), table names and skip reasons.
//
// Semantics: the database after a load equals applying every event in seq order, one at a
// time, with the rules of SCHEMA.md. Choices the contract leaves open: Since is inclusive and
// Until exclusive; an event without a time takes the previous event's time in seq order (across
// segments and runs, through backfill_loader.event_time), and is skipped as no_time when there
// is none; an update is a delete then a create, so when its new record gives no row (it did
// not decode, its block is missing, a value is too long) the old row is gone all the same, as
// the repository no longer holds it (a profile's columns are cleared); the repo DID of a commit is ensured in users even when all its ops are skipped or filtered; the DID
// of a like's or repost's subject is ensured only when the subject URI's authority is a DID;
// identifiers longer than their column are skipped (too_long) and a too long display name is
// cut (truncated), instead of failing the transaction on every retry.
//
// Units and --batch-size: a unit is consecutive sealed segments loaded in one transaction.
// BatchSize is the most segments one unit takes once it holds at least 1 MiB of raw frames, and
// a unit never grows past 80,000 frames or 288 MiB (a segment holding more is a unit of its
// own); a run's first four units are smaller (an eighth of those caps, then a quarter, a half and
// three quarters, never less than one segment), so the database starts once one segment is
// decoded instead of four, and the decoders stay ahead of the writer as units grow; its last
// four shrink the same way in reverse (once the spool's last segments are listed), so that
// the database has little left to write alone once the last unit is decoded. A
// transaction costs round trips and an fsync whatever it holds, so the 1 MiB floor keeps
// BatchSize 1 from crippling a load of small (time-sealed) segments. Every unit touches the
// pages of every table and index again, so the server writes a unit's rows cheaper the more
// there are; the frame cap bounds the memory of the units in flight (the writer's, and the
// next two, planned) and keeps the decoder and the writer overlapping. Smaller BatchSize values
// trade speed for smaller transactions.
//
// Write path, per unit, in pipelined batches: BEGIN, settings, the profile and handle updates
// of users that exist, and accounts; then the pending rows the unit meets, the pre-existing
// pairs the phase cut needs, and the deletes that precede every create, each pair table's after
// a savepoint of its own that undoes them (and the deletes after them, if that table's cut
// changes); then the probes of the creates; then one query that COPYs the creates of every
// table straight into it, each in its own savepoint (every other unit takes the tables in
// reverse order, and each table's rows in descending key order); then one batch with the
// cursor, the high-water mark, the segments and COMMIT. What the writer works out for a batch
// (the pending rows met, the COPY targets) it works out while the server runs the one before.
// The planner cuts the phases beforehand; the writer cuts again only when a pre-existing pair can
// change the cut. Which creates of a table (or phase) the COPY carries is sequential application
// worked out in memory: in pos order, a create is kept unless a kept one before it, or a row
// known to exist, holds its uri or pair; the kept creates are pairwise distinct on every unique
// key and go in key order (kinder to the indexes). The COPY is exact because sequential
// application skips exactly the creates whose key exists: when one exists that the writer did
// not know of, the COPY fails inside its savepoint, the existing keys are read, and a second
// COPY writes the others (direct.go). Creates whose uri or pair an earlier unit of the run wrote
// (a Bloom filter remembers them, seen.go) are probed before the COPY, so a load into empty
// tables rarely fails a COPY. Users that may not exist are COPYed with their final handle and
// profile. Staging (TEMP tables created once per connection, ON COMMIT DELETE ROWS) and INSERT
// ... SELECT remain for tables with unique indexes beyond SCHEMA.md's or other column types, a
// unit retried after a unique violation, and creates that a concurrent writer raced; they skip
// existing keys with NOT EXISTS anti-joins, or ON CONFLICT DO NOTHING (ORDER BY pos) where rows
// may collide. Hash and merge joins, sequential scans, parallel plans and JIT are off in these
// transactions: every statement finds its rows by key, staging tables have no statistics, and
// tables that grew since their last ANALYZE get plans for small tables. DIDs ensured by an
// earlier commit of the same run are not ensured again (users rows are never deleted by the
// loader; the memory is bounded and reset at each Run).
//
// Left-out creates: when the spool's delete index says that a later event the load will apply
// deletes or updates a record, the unit that creates it does not write its row (the planner
// drops a post; the writer keeps a like, repost, follow or block pending, as its pair stays
// taken until then). The tables after that later event are those of sequential application;
// before it they lack only such rows (hints.go, pending.go). A load into empty tables writes
// the final rows and almost nothing else: a delete or update of a row written by an earlier
// unit costs an insert and a delete otherwise. Config.NoDeleteHints turns it off.
//
// Progress: a segment in backfill_segments (same relay, first and last seq, checksum) is never
// loaded again, and frames at or below the relay's high-water mark (backfill_loader) are skipped,
// so a spool re-fetched with other segment boundaries loads only what is new. The
// firehose_cursor row of Config.Service holds the last loaded seq, written in the same
// transaction. Transient errors (lost connection, server restart, serialization failure,
// deadlock) roll the unit back and retry it on a new connection with jittered backoff.
//
// Head start (head.go): while the writer writes a unit on one connection, the next unit's
// transaction begins on the other and COPYs the creates that nothing in either unit touches
// (alone on their uri and pair, in no unit before, not pending); once the unit before has
// committed it goes on as above, taking those creates as written. The next unit's head start
// begins as soon as a unit is taken for writing, while that unit's own early COPY may still run.
// The units take turns on the two connections, each is still one transaction, and they commit
// in order. A unit that fails after its head start is retried the usual way on the main
// connection.
//
// Concurrency: one Loader owns a main connection, which holds a session advisory lock (a second
// loader on the same database fails in Open with ErrLocked), and a helper connection for every
// other unit, opened on the first head start. Run runs one reading goroutine,
// Config.Workers decode goroutines (one decode.Decoder each) and one writer; the reader works
// on the next unit while the writer commits the current one, at most two units ahead. Reading,
// decoding and planning take at most GOMAXPROCS-1 threads (at least one) at once, the writer
// the other: on a machine shared with the database, more only slows the writer. On Linux their
// threads run at nice 10 (nice_linux.go), so that the writer's comes first.
// Run and Close must not overlap; Stats may be read from any goroutine at any time. The package
// never logs except debug lines for skipped input to Config.Logger.
package loader
