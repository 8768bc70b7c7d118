package loader

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// ErrSchema is returned when an existing table lacks a column the loader writes.
var ErrSchema = errors.New("loader: schema mismatch")

// tableDDL is SCHEMA.md's DDL, made idempotent; the tool's own tables follow.
var tableDDL = []string{
	`CREATE TABLE IF NOT EXISTS users (
  did            varchar(255) PRIMARY KEY,
  handle         varchar(255) NOT NULL,
  display_name   varchar(255),
  avatar_url     text,
  banner_url     text,
  description    text,
  profile_record jsonb,
  pinned_post    jsonb,
  search_vector  tsvector,
  created_at     timestamp NOT NULL DEFAULT now(),
  indexed_at     timestamp NOT NULL DEFAULT now()
)`,
	`CREATE TABLE IF NOT EXISTS posts (
  uri                      varchar(512) PRIMARY KEY,
  cid                      varchar(255) NOT NULL,
  author_did               varchar(255) NOT NULL,
  text                     text NOT NULL,
  parent_uri               varchar(512),
  root_uri                 varchar(512),
  embed                    jsonb,
  facets                   jsonb,
  violates_thread_gate     boolean NOT NULL DEFAULT false,
  violates_embedding_rules boolean NOT NULL DEFAULT false,
  has_thread_gate          boolean NOT NULL DEFAULT false,
  has_post_gate            boolean NOT NULL DEFAULT false,
  tags                     jsonb NOT NULL DEFAULT '[]'::jsonb,
  search_vector            tsvector,
  created_at               timestamp NOT NULL,
  indexed_at               timestamp NOT NULL DEFAULT now()
)`,
	`CREATE TABLE IF NOT EXISTS likes (
  uri        varchar(512) PRIMARY KEY,
  user_did   varchar(255) NOT NULL,
  post_uri   varchar(512) NOT NULL,
  created_at timestamp NOT NULL,
  indexed_at timestamp NOT NULL DEFAULT now()
)`,
	`CREATE TABLE IF NOT EXISTS reposts (
  uri        varchar(512) PRIMARY KEY,
  user_did   varchar(255) NOT NULL,
  post_uri   varchar(512) NOT NULL,
  created_at timestamp NOT NULL,
  indexed_at timestamp NOT NULL DEFAULT now()
)`,
	`CREATE TABLE IF NOT EXISTS follows (
  uri           varchar(512) PRIMARY KEY,
  follower_did  varchar(255) NOT NULL,
  following_did varchar(255) NOT NULL,
  created_at    timestamp NOT NULL,
  indexed_at    timestamp NOT NULL DEFAULT now()
)`,
	`CREATE TABLE IF NOT EXISTS blocks (
  uri         varchar(512) PRIMARY KEY,
  blocker_did varchar(255) NOT NULL,
  blocked_did varchar(255) NOT NULL,
  created_at  timestamp NOT NULL,
  indexed_at  timestamp NOT NULL DEFAULT now()
)`,
	`CREATE TABLE IF NOT EXISTS firehose_cursor (
  id              serial PRIMARY KEY,
  service         varchar(255) NOT NULL UNIQUE,
  cursor          text,
  last_event_time timestamp,
  updated_at      timestamp NOT NULL DEFAULT now()
)`,
	`CREATE TABLE IF NOT EXISTS backfill_segments (
  relay          text NOT NULL,
  first_seq      bigint NOT NULL,
  last_seq       bigint NOT NULL,
  checksum       bigint NOT NULL,
  name           text NOT NULL,
  frames         bigint NOT NULL,
  events         bigint NOT NULL,
  rows_written   jsonb NOT NULL,
  skipped        jsonb NOT NULL,
  repaired       jsonb NOT NULL,
  batch_segments integer NOT NULL,
  loaded_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (relay, first_seq, last_seq, checksum)
)`,
	`CREATE TABLE IF NOT EXISTS backfill_accounts (
  did    text PRIMARY KEY,
  active boolean NOT NULL,
  status text NOT NULL,
  seq    bigint NOT NULL,
  time   timestamp NOT NULL
)`,
	`CREATE TABLE IF NOT EXISTS backfill_loader (
  relay      text PRIMARY KEY,
  seq        bigint NOT NULL,
  event_time timestamp,
  updated_at timestamptz NOT NULL DEFAULT now()
)`,
	// Rows left out (hints.go) await the deletes up to awaits_seq, which only a load with the
	// window and collections of the one that left them out (or wider ones) applies: a bitmask
	// of decode.Collection, 0 for all. Added to the table of an earlier version in place.
	`DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'backfill_loader'::regclass AND attname = 'awaits_seq' AND NOT attisdropped) THEN
    ALTER TABLE backfill_loader
      ADD COLUMN awaits_seq bigint NOT NULL DEFAULT 0,
      ADD COLUMN awaits_since timestamp,
      ADD COLUMN awaits_until timestamp,
      ADD COLUMN awaits_collections integer NOT NULL DEFAULT 0;
  END IF;
END $$`,
	// The log of pair rows left out (pending.go): its records are not worth pglz's time (14 ms
	// for a unit's 300 kB).
	`DO $$ BEGIN
  IF to_regclass('backfill_pending') IS NULL THEN
    CREATE TABLE backfill_pending (
      id    bigserial PRIMARY KEY,
      delta bytea NOT NULL
    );
    ALTER TABLE backfill_pending ALTER COLUMN delta SET STORAGE EXTERNAL;
  END IF;
END $$`,
}

// indexSpec is one index of SCHEMA.md.
type indexSpec struct {
	name   string
	table  string
	cols   []string
	unique bool
}

var indexes = []indexSpec{
	{"idx_users_handle", "users", []string{"handle"}, false},
	{"idx_users_created_at", "users", []string{"created_at"}, false},
	{"idx_posts_author_did", "posts", []string{"author_did"}, false},
	{"idx_posts_indexed_at", "posts", []string{"indexed_at"}, false},
	{"idx_posts_parent_uri", "posts", []string{"parent_uri"}, false},
	{"idx_posts_root_uri", "posts", []string{"root_uri"}, false},
	{"idx_likes_user_did", "likes", []string{"user_did"}, false},
	{"idx_likes_post_uri", "likes", []string{"post_uri"}, false},
	{"unique_like_user_post", "likes", []string{"user_did", "post_uri"}, true},
	{"idx_reposts_user_did", "reposts", []string{"user_did"}, false},
	{"idx_reposts_post_uri", "reposts", []string{"post_uri"}, false},
	{"unique_repost_user_post", "reposts", []string{"user_did", "post_uri"}, true},
	{"idx_follows_follower", "follows", []string{"follower_did"}, false},
	{"idx_follows_following", "follows", []string{"following_did"}, false},
	{"unique_follow_follower_following", "follows", []string{"follower_did", "following_did"}, true},
	{"idx_blocks_blocker", "blocks", []string{"blocker_did"}, false},
	{"idx_blocks_blocked", "blocks", []string{"blocked_did"}, false},
	{"unique_block_blocker_blocked", "blocks", []string{"blocker_did", "blocked_did"}, true},
}

// requiredKeys are the unique keys the loader's statements depend on.
var requiredKeys = []indexSpec{
	{table: "users", cols: []string{"did"}},
	{table: "posts", cols: []string{"uri"}},
	{table: "likes", cols: []string{"uri"}},
	{table: "reposts", cols: []string{"uri"}},
	{table: "follows", cols: []string{"uri"}},
	{table: "blocks", cols: []string{"uri"}},
	{table: "firehose_cursor", cols: []string{"service"}},
	{table: "backfill_segments", cols: []string{"relay", "first_seq", "last_seq", "checksum"}},
	{table: "backfill_accounts", cols: []string{"did"}},
	{table: "backfill_loader", cols: []string{"relay"}},
	{table: "backfill_pending", cols: []string{"id"}},
}

func (ix indexSpec) ddl() string {
	u := ""
	if ix.unique {
		u = "UNIQUE "
	}
	return fmt.Sprintf("CREATE %sINDEX IF NOT EXISTS %s ON %s (%s)", u, ix.name, ix.table, strings.Join(ix.cols, ", "))
}

// writtenColumns lists, per table, every column the loader writes or reads.
var writtenColumns = map[string][]string{
	"users":             {"did", "handle", "display_name", "avatar_url", "banner_url", "description", "profile_record", "pinned_post", "created_at", "indexed_at"},
	"posts":             {"uri", "cid", "author_did", "text", "parent_uri", "root_uri", "embed", "facets", "tags", "created_at", "indexed_at"},
	"likes":             {"uri", "user_did", "post_uri", "created_at", "indexed_at"},
	"reposts":           {"uri", "user_did", "post_uri", "created_at", "indexed_at"},
	"follows":           {"uri", "follower_did", "following_did", "created_at", "indexed_at"},
	"blocks":            {"uri", "blocker_did", "blocked_did", "created_at", "indexed_at"},
	"firehose_cursor":   {"service", "cursor", "last_event_time", "updated_at"},
	"backfill_segments": {"relay", "first_seq", "last_seq", "checksum", "name", "frames", "events", "rows_written", "skipped", "repaired", "batch_segments", "loaded_at"},
	"backfill_accounts": {"did", "active", "status", "seq", "time"},
	"backfill_loader":   {"relay", "seq", "event_time", "updated_at", "awaits_seq", "awaits_since", "awaits_until", "awaits_collections"},
	"backfill_pending":  {"id", "delta"},
}

// schemaInfo is what the loader learns about the target tables at Open.
type schemaInfo struct {
	lim limits
	// extraKeys names the written tables that have a unique or exclusion index beyond the keys of
	// SCHEMA.md: only ON CONFLICT DO NOTHING respects those, so their inserts never use anti-joins.
	extraKeys map[string]bool
	// direct names the tables that creates may be COPYed into straight (direct.go).
	direct map[string]bool
}

// copyTypes are the types of the columns the loader COPYs into straight, by table: s is text
// or varchar, j jsonb, t timestamp; copy.go writes exactly these.
var copyTypes = map[string]map[string]byte{
	"users":   {"did": 's', "handle": 's', "display_name": 's', "description": 's', "avatar_url": 's', "banner_url": 's', "pinned_post": 'j', "profile_record": 'j', "created_at": 't', "indexed_at": 't'},
	"posts":   {"uri": 's', "cid": 's', "author_did": 's', "text": 's', "parent_uri": 's', "root_uri": 's', "embed": 'j', "facets": 'j', "tags": 'j', "created_at": 't', "indexed_at": 't'},
	"likes":   {"uri": 's', "user_did": 's', "post_uri": 's', "created_at": 't', "indexed_at": 't'},
	"reposts": {"uri": 's', "user_did": 's', "post_uri": 's', "created_at": 't', "indexed_at": 't'},
	"follows": {"uri": 's', "follower_did": 's', "following_did": 's', "created_at": 't', "indexed_at": 't'},
	"blocks":  {"uri": 's', "blocker_did": 's', "blocked_did": 's', "created_at": 't', "indexed_at": 't'},
}

// directTables returns the tables the loader may COPY into straight: plain or partitioned
// tables without row-level security (COPY FROM refuses it) or rules (COPY FROM ignores them),
// whose written columns have the types copy.go encodes. The others get staging and INSERT.
func directTables(ctx context.Context, conn *pgx.Conn) (map[string]bool, error) {
	tables := make([]string, 0, len(copyTypes))
	for t := range copyTypes {
		tables = append(tables, t)
	}
	rows, err := conn.Query(ctx, `
SELECT c.relname::text, c.relkind IN ('r', 'p') AND NOT c.relrowsecurity AND NOT c.relhasrules,
       a.attname::text, format_type(a.atttypid, NULL)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = current_schema() AND c.relname = ANY($1)`, tables)
	if err != nil {
		return nil, fmt.Errorf("list column types: %w", err)
	}
	ok := map[string]bool{}
	bad := map[string]bool{}
	for rows.Next() {
		var table, column, typ string
		var plain bool
		if err := rows.Scan(&table, &plain, &column, &typ); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list column types: %w", err)
		}
		want, written := copyTypes[table][column]
		if !written {
			continue
		}
		fits := false
		switch typ {
		case "text", "character varying":
			fits = want == 's'
		case "jsonb":
			fits = want == 'j'
		case "timestamp without time zone":
			fits = want == 't'
		}
		if !plain || !fits {
			bad[table] = true
		}
		ok[table] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list column types: %w", err)
	}
	for t := range bad {
		delete(ok, t)
	}
	return ok, nil
}

// knownKeys are the unique keys of SCHEMA.md that the loader's anti-joins check.
var knownKeys = map[string][][]string{
	"users":   {{"did"}},
	"posts":   {{"uri"}},
	"likes":   {{"uri"}, {"user_did", "post_uri"}},
	"reposts": {{"uri"}, {"user_did", "post_uri"}},
	"follows": {{"uri"}, {"follower_did", "following_did"}},
	"blocks":  {{"uri"}, {"blocker_did", "blocked_did"}},
}

// limits holds the character limits of varchar columns. The zero value has none.
type limits struct {
	by  map[string]int // by "table.column"; absent means none
	min int            // the smallest of them: a string of at most min bytes fits every column
}

func newLimits(by map[string]int) limits {
	l := limits{by: by, min: math.MaxInt}
	for _, n := range by {
		l.min = min(l.min, n)
	}
	return l
}

// limit returns the column's character limit, if it has one.
func (l limits) limit(table, column string) (int, bool) {
	n, ok := l.by[table+"."+column]
	return n, ok
}

// fits reports whether s fits the column's character limit. The planner asks it for every
// uri, DID and handle it writes, almost all of them far shorter than any limit: those are
// answered without building the key and looking it up (2% of the loader's CPU).
func (l limits) fits(table, column, s string) bool {
	if len(s) <= l.min {
		return true
	}
	n, ok := l.limit(table, column)
	if !ok || len(s) <= n {
		return true
	}
	return utf8.RuneCountInString(s) <= n
}

// ensureSchema creates missing tables and indexes, then checks every column the loader uses
// and returns the varchar limits of the columns it writes.
func ensureSchema(ctx context.Context, conn *pgx.Conn) (*schemaInfo, error) {
	for _, ddl := range tableDDL {
		if _, err := conn.Exec(ctx, ddl); err != nil {
			return nil, fmt.Errorf("create table: %w", err)
		}
	}
	tables := make([]string, 0, len(writtenColumns))
	for t := range writtenColumns {
		tables = append(tables, t)
	}
	slices.Sort(tables)
	lim, err := checkColumns(ctx, conn, tables)
	if err != nil {
		return nil, err
	}

	// An existing index on the same columns (under another name) already does the job: a second
	// one would only double the index maintenance of every load.
	have := map[string][][]string{} // "table/unique" -> column lists of plain indexes
	extra := map[string]bool{}      // tables with a unique or exclusion index beyond the known keys
	rows, err := conn.Query(ctx, `
SELECT t.relname::text, i.indisunique, i.indisexclusion, i.indpred IS NULL AND i.indexprs IS NULL,
       array_agg(coalesce(a.attname::text, '') ORDER BY k.ord)
FROM pg_index i
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
WHERE n.nspname = current_schema() AND t.relname = ANY($1)
GROUP BY i.indexrelid, t.relname, i.indisunique, i.indisexclusion, i.indpred, i.indexprs`, tables)
	if err != nil {
		return nil, fmt.Errorf("list indexes: %w", err)
	}
	for rows.Next() {
		var table string
		var unique, exclusion, plain bool
		var cols []string
		if err := rows.Scan(&table, &unique, &exclusion, &plain, &cols); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list indexes: %w", err)
		}
		if plain {
			key := fmt.Sprintf("%s/%v", table, unique)
			have[key] = append(have[key], cols)
		}
		if (unique || exclusion) && !(plain && unique && slices.ContainsFunc(knownKeys[table], func(k []string) bool { return slices.Equal(k, cols) })) {
			extra[table] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list indexes: %w", err)
	}
	// The create rule and the upserts rely on these keys; without them the result would differ
	// from the contract, so their absence is a schema mismatch, not something to patch.
	for _, key := range requiredKeys {
		ok := false
		for _, cols := range have[key.table+"/true"] {
			if slices.Equal(cols, key.cols) {
				ok = true
			}
		}
		if !ok {
			return nil, fmt.Errorf("%w: table %s has no primary key or unique index on (%s)", ErrSchema, key.table, strings.Join(key.cols, ", "))
		}
	}
	for _, ix := range indexes {
		covered := false
		for _, unique := range []bool{true, false} {
			if ix.unique && !unique {
				continue
			}
			for _, cols := range have[fmt.Sprintf("%s/%v", ix.table, unique)] {
				if slices.Equal(cols, ix.cols) {
					covered = true
				}
			}
		}
		if covered {
			continue
		}
		if _, err := conn.Exec(ctx, ix.ddl()); err != nil {
			return nil, fmt.Errorf("create index %s: %w", ix.name, err)
		}
	}
	direct, err := directTables(ctx, conn)
	if err != nil {
		return nil, err
	}
	return &schemaInfo{lim: lim, extraKeys: extra, direct: direct}, nil
}

// checkColumns verifies that each table has every column the loader uses and returns the
// varchar limits of those columns.
func checkColumns(ctx context.Context, conn *pgx.Conn, tables []string) (limits, error) {
	rows, err := conn.Query(ctx, `
SELECT table_name::text, column_name::text, character_maximum_length
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ANY($1)`, tables)
	if err != nil {
		return limits{}, fmt.Errorf("list columns: %w", err)
	}
	found := map[string]bool{}
	lim := map[string]int{}
	for rows.Next() {
		var table, column string
		var maxLen *int32
		if err := rows.Scan(&table, &column, &maxLen); err != nil {
			rows.Close()
			return limits{}, fmt.Errorf("list columns: %w", err)
		}
		found[table+"."+column] = true
		if maxLen != nil {
			lim[table+"."+column] = int(*maxLen)
		}
	}
	if err := rows.Err(); err != nil {
		return limits{}, fmt.Errorf("list columns: %w", err)
	}
	for _, table := range tables {
		for _, column := range writtenColumns[table] {
			if !found[table+"."+column] {
				return limits{}, fmt.Errorf("%w: table %s has no column %s", ErrSchema, table, column)
			}
		}
	}
	return newLimits(lim), nil
}
