package loader

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/backfill/backfill/decode"
	"github.com/jackc/pgx/v5"
)

// model is the sequential reference: it applies one event at a time with the contract's rules,
// using maps, and renders what the database must hold.
type model struct {
	since, until time.Time
	selected     map[string]bool // NSIDs; nil means all

	users    map[string]*mUser
	posts    map[string]mPost
	pairs    map[string]map[string]mPair // by NSID
	accounts map[string]mAccount
	cursor   int64
	curTime  time.Time
	lastTime time.Time
}

type mUser struct {
	handle                   string
	displayName, description *string
	hasRecord                bool
	created, indexed         time.Time
}

type mPost struct {
	cid, author, text string
	created, indexed  time.Time
}

type mPair struct {
	a, b             string
	created, indexed time.Time
}

type mAccount struct {
	active bool
	status string
	seq    int64
	t      time.Time
}

func newModel() *model {
	return &model{
		users:    map[string]*mUser{},
		posts:    map[string]mPost{},
		pairs:    map[string]map[string]mPair{nsLike: {}, nsRepost: {}, nsFollow: {}, nsBlock: {}},
		accounts: map[string]mAccount{},
	}
}

func (m *model) ensure(did string, t time.Time) {
	if _, ok := m.users[did]; !ok {
		m.users[did] = &mUser{handle: "handle.invalid", created: t, indexed: t}
	}
}

func (m *model) applyAll(evs []tEvent) {
	for _, e := range evs {
		m.apply(e)
	}
}

func (m *model) apply(e tEvent) {
	if e.kind == decode.KindInfo {
		return // no seq in the body: the mark does not move
	}
	if e.bad {
		m.cursor = max(m.cursor, e.seq)
		return
	}
	t := e.time
	if t.IsZero() {
		if m.lastTime.IsZero() {
			m.cursor = e.seq
			return
		}
		t = m.lastTime
	}
	t = t.UTC().Truncate(time.Millisecond)
	m.lastTime, m.cursor, m.curTime = t, e.seq, t
	if (!m.since.IsZero() && t.Before(m.since)) || (!m.until.IsZero() && !t.Before(m.until)) {
		return
	}
	m.ensure(e.did, t)
	switch e.kind {
	case decode.KindIdentity:
		if e.handle != nil {
			m.users[e.did].handle = strings.ToLower(*e.handle)
		}
	case decode.KindAccount:
		status := "active"
		if e.status != nil {
			status = *e.status
		} else if !e.active {
			status = ""
		}
		m.accounts[e.did] = mAccount{active: e.active, status: status, seq: e.seq, t: t}
	case decode.KindCommit:
		for _, o := range e.ops {
			m.op(e.did, o, t)
		}
	}
}

func (m *model) op(did string, o tOp, t time.Time) {
	if o.coll == nsOther || (m.selected != nil && !m.selected[o.coll]) {
		return
	}
	uri := o.uri(did)
	created := t
	if o.created == "" {
		created, _ = time.Parse(time.RFC3339, testCreated)
	} else if c, err := time.Parse(time.RFC3339, o.created); err == nil {
		created = c
	}
	switch o.coll {
	case nsProfile:
		if o.rkey != "self" {
			return
		}
		u := m.users[did]
		if o.bad {
			// An update replaces the profile with nothing; a create changes nothing.
			if o.action == "update" {
				u.displayName, u.description, u.hasRecord = nil, nil, false
			}
			return
		}
		if o.action == "delete" {
			u.displayName, u.description, u.hasRecord = nil, nil, false
		} else {
			u.displayName, u.description, u.hasRecord = o.displayName, o.description, true
		}
	case nsPost:
		if o.action != "create" {
			delete(m.posts, uri)
		}
		if o.action != "delete" && !o.bad {
			if _, ok := m.posts[uri]; !ok {
				m.posts[uri] = mPost{cid: "", author: did, text: o.text, created: created, indexed: t}
			}
		}
	default:
		tab := m.pairs[o.coll]
		if o.action != "create" {
			delete(tab, uri)
		}
		if o.action == "delete" || o.bad {
			return
		}
		named := o.subject
		if o.coll == nsLike || o.coll == nsRepost {
			named = uriDID(o.subject)
		}
		if named != "" {
			m.ensure(named, t)
		}
		if _, ok := tab[uri]; ok {
			return
		}
		for _, r := range tab {
			if r.a == did && r.b == o.subject {
				return
			}
		}
		tab[uri] = mPair{a: did, b: o.subject, created: created, indexed: t}
	}
}

func ts(t time.Time) string { return t.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano) }

func strp(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

// dump renders the model as dumpDB renders the database.
func (m *model) dump() map[string][]string {
	out := map[string][]string{}
	for did, u := range m.users {
		out["users"] = append(out["users"], fmt.Sprintf("%s|%s|%s|%s|%v|%s|%s", did, u.handle, strp(u.displayName), strp(u.description), u.hasRecord, ts(u.created), ts(u.indexed)))
	}
	for uri, p := range m.posts {
		out["posts"] = append(out["posts"], fmt.Sprintf("%s|%s|%s|%s|%s", uri, p.author, p.text, ts(p.created), ts(p.indexed)))
	}
	for ns, name := range map[string]string{nsLike: "likes", nsRepost: "reposts", nsFollow: "follows", nsBlock: "blocks"} {
		for uri, r := range m.pairs[ns] {
			out[name] = append(out[name], fmt.Sprintf("%s|%s|%s|%s|%s", uri, r.a, r.b, ts(r.created), ts(r.indexed)))
		}
	}
	for did, a := range m.accounts {
		out["backfill_accounts"] = append(out["backfill_accounts"], fmt.Sprintf("%s|%v|%s|%d|%s", did, a.active, a.status, a.seq, ts(a.t)))
	}
	if m.cursor > 0 {
		ct := "NULL"
		if !m.curTime.IsZero() {
			ct = ts(m.curTime)
		}
		out["firehose_cursor"] = []string{fmt.Sprintf("backfill|%d|%s", m.cursor, ct)}
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out
}

// dumpDB renders the loaded tables as sorted lines.
func dumpDB(tb testing.TB, c *pgx.Conn) map[string][]string {
	tb.Helper()
	queries := map[string]string{
		"users":             `SELECT did || '|' || handle || '|' || coalesce(display_name, 'NULL') || '|' || coalesce(description, 'NULL') || '|' || (profile_record IS NOT NULL)::text, created_at, indexed_at FROM users`,
		"posts":             `SELECT uri || '|' || author_did || '|' || text, created_at, indexed_at FROM posts`,
		"likes":             `SELECT uri || '|' || user_did || '|' || post_uri, created_at, indexed_at FROM likes`,
		"reposts":           `SELECT uri || '|' || user_did || '|' || post_uri, created_at, indexed_at FROM reposts`,
		"follows":           `SELECT uri || '|' || follower_did || '|' || following_did, created_at, indexed_at FROM follows`,
		"blocks":            `SELECT uri || '|' || blocker_did || '|' || blocked_did, created_at, indexed_at FROM blocks`,
		"backfill_accounts": `SELECT did || '|' || active::text || '|' || status || '|' || seq::text, time, NULL::timestamp FROM backfill_accounts`,
		"firehose_cursor":   `SELECT service || '|' || cursor, last_event_time, NULL::timestamp FROM firehose_cursor`,
	}
	out := map[string][]string{}
	for table, q := range queries {
		rows, err := c.Query(context.Background(), q)
		if err != nil {
			tb.Fatalf("dump %s: %v", table, err)
		}
		for rows.Next() {
			var s string
			var t1, t2 *time.Time
			if err := rows.Scan(&s, &t1, &t2); err != nil {
				tb.Fatalf("dump %s: %v", table, err)
			}
			for _, t := range []*time.Time{t1, t2} {
				if t != nil {
					s += "|" + ts(*t)
				} else if table == "firehose_cursor" && t == t1 {
					s += "|NULL"
				}
			}
			out[table] = append(out[table], s)
		}
		if err := rows.Err(); err != nil {
			tb.Fatalf("dump %s: %v", table, err)
		}
		slices.Sort(out[table])
	}
	for k, v := range out {
		if len(v) == 0 {
			delete(out, k)
		}
	}
	return out
}

// diffDumps returns a readable difference between two dumps, "" when equal.
func diffDumps(got, want map[string][]string) string {
	var b strings.Builder
	tables := map[string]bool{}
	for k := range got {
		tables[k] = true
	}
	for k := range want {
		tables[k] = true
	}
	for _, table := range slices.Sorted(func(yield func(string) bool) {
		for k := range tables {
			if !yield(k) {
				return
			}
		}
	}) {
		g, w := map[string]bool{}, map[string]bool{}
		for _, s := range got[table] {
			g[s] = true
		}
		for _, s := range want[table] {
			w[s] = true
		}
		for _, s := range want[table] {
			if !g[s] {
				fmt.Fprintf(&b, "%s: missing %s\n", table, s)
			}
		}
		for _, s := range got[table] {
			if !w[s] {
				fmt.Fprintf(&b, "%s: unexpected %s\n", table, s)
			}
		}
		if len(got[table]) != len(want[table]) && b.Len() == 0 {
			fmt.Fprintf(&b, "%s: %d rows, want %d\n", table, len(got[table]), len(want[table]))
		}
	}
	return b.String()
}
