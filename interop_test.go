package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/backfill/backfill/relaytest"
)

// TestInteropPDS backfills from a real, independent producer of firehose data: the reference
// TypeScript PDS (@atproto/pds, with an in-memory PLC directory), which interop/pds.mjs runs on
// loopback through a script of accounts, records of every kind (with embeds, facets, replies,
// blobs, several ops in one commit), updates, deletes, a handle change and account status
// changes. `backfill run` fetches its subscribeRepos stream and loads it; the database must
// then equal both
//   - the sequential model of the spooled frames (relaytest.Model, indigo's decoders), and
//   - what the PDS itself says it holds (listRecords, describeRepo, getRepoStatus), column by
//     column, the JSON columns against the PDS's own JSON of the records.
//
// It needs Node.js and interop's packages: npm ci --prefix interop
func TestInteropPDS(t *testing.T) {
	t.Parallel()
	pds := startPDS(t)
	dsn := newDatabase(t)
	dir := t.TempDir()
	for round := 1; round <= 2; round++ {
		if round == 2 {
			pds.more(t) // then the backfill goes on from the spool's last seq
		}
		if code := backfill(t, "run", "--relay-url", pds.url, "--spool", dir, "--days", "-1",
			"--database-url", dsn, "--idle-timeout", "2s", "--segment-size", "8192"); code != 0 {
			t.Fatalf("round %d: backfill run: exit code %d", round, code)
		}

		// The frames, as indigo reads them, applied one at a time.
		seqs, frames := spoolRecords(t, dir)
		if len(frames) == 0 {
			t.Fatal("the spool holds no frames")
		}
		model := relaytest.NewModel()
		for i, f := range frames {
			if i > 0 && seqs[i] <= seqs[i-1] {
				t.Fatalf("round %d: the spool holds seq %d after %d", round, seqs[i], seqs[i-1])
			}
			model.Apply(relaytest.Frame{Seq: seqs[i], Bytes: f})
		}
		for reason, n := range model.Problems {
			t.Errorf("round %d: the model counted %d %s in the PDS's frames", round, n, reason)
		}
		got := dumpDB(t, dsn)
		compareModel(t, got, model)

		// Nothing of the PDS's frames is skipped or repaired, and the load had several segments.
		conn := connect(t, dsn)
		var segments int
		var skipped, repaired string
		if err := conn.QueryRow(context.Background(), `SELECT count(*), coalesce(jsonb_agg(skipped) FILTER (WHERE skipped <> '{}'), '[]')::text, coalesce(jsonb_agg(repaired) FILTER (WHERE repaired <> '{}'), '[]')::text FROM backfill_segments`).Scan(&segments, &skipped, &repaired); err != nil {
			t.Fatal(err)
		}
		conn.Close(context.Background())
		if skipped != "[]" || repaired != "[]" {
			t.Errorf("round %d: backfill_segments: skipped %s, repaired %s; want none", round, skipped, repaired)
		}
		if segments < 2*round {
			t.Errorf("round %d: %d segments loaded; the test wants several a round", round, segments)
		}
		comparePDS(t, got, pds.snapshot(t))
		if t.Failed() {
			t.FailNow()
		}
	}
}

// testPDS is interop/pds.mjs running.
type testPDS struct {
	url, snapPath string
	stdin         io.WriteCloser
	ready         chan struct{}
	exited        chan error
	stderr        *strings.Builder
}

// startPDS runs interop/pds.mjs and waits until it has played its first round.
func startPDS(t *testing.T) *testPDS {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("TestInteropPDS needs Node.js (node on PATH): %v", err)
	}
	if _, err := os.Stat(filepath.Join("interop", "node_modules", "@atproto", "pds")); err != nil {
		t.Fatalf("TestInteropPDS needs interop's Node.js packages: run `npm ci --prefix interop` (%v)", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	p := &testPDS{
		url:      fmt.Sprintf("ws://localhost:%d", port),
		snapPath: filepath.Join(t.TempDir(), "snapshot.json"),
		ready:    make(chan struct{}, 1),
		exited:   make(chan error, 1),
		stderr:   &strings.Builder{},
	}
	cmd := exec.Command(node, "pds.mjs", p.snapPath, fmt.Sprint(port))
	cmd.Dir = "interop"
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY ") {
				p.ready <- struct{}{}
			}
		}
		io.Copy(io.Discard, stdout)
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		p.stdin.Close() // the script shuts the PDS down when its stdin closes
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-p.exited
		}
	})
	p.wait(t)
	return p
}

// wait waits for the script's READY.
func (p *testPDS) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.ready:
	case err := <-p.exited:
		t.Fatalf("interop/pds.mjs exited (%v):\n%s", err, p.stderr.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("interop/pds.mjs was not ready after 3 minutes:\n%s", p.stderr.String())
	}
}

// more plays the script's second round.
func (p *testPDS) more(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, "more\n"); err != nil {
		t.Fatal(err)
	}
	p.wait(t)
}

// snapshot reads what the script last wrote of the PDS's state.
func (p *testPDS) snapshot(t *testing.T) *pdsSnapshot {
	t.Helper()
	b, err := os.ReadFile(p.snapPath)
	if err != nil {
		t.Fatal(err)
	}
	var snap pdsSnapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return &snap
}

// pdsSnapshot is what interop/pds.mjs writes: each account as the PDS answers for it.
type pdsSnapshot struct {
	Accounts []struct {
		Name, DID, Status string
		Handle            string // "" for a deleted account: the PDS no longer answers for it
		Active            bool
		Records                   []struct {
			URI, CID string
			Value    json.RawMessage
		}
	}
}

// comparePDS checks the tables against the PDS's own account of its records: every record a
// row, no row without a record, each column as SCHEMA.md maps it (indexed_at, the event's
// time, is the model's part).
func comparePDS(t *testing.T, got *relaytest.Model, snap *pdsSnapshot) {
	t.Helper()
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	type recordJSON struct {
		Text      string
		CreatedAt string
		Reply     *struct{ Root, Parent struct{ URI string } }
		Embed     json.RawMessage
		Facets    []struct {
			Features []struct {
				Type string `json:"$type"`
				Tag  string
			}
		}
		Tags    []string
		Subject json.RawMessage
		// profiles
		DisplayName, Description *string
		Avatar, Banner           *struct{ Ref struct{ Link string `json:"$link"` } }
		PinnedPost               json.RawMessage
	}
	created := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("createdAt %q: %v", s, err)
		}
		return ts(tm)
	}
	want := map[string]map[string]bool{"posts": {}, "likes": {}, "reposts": {}, "follows": {}, "blocks": {}}
	check := func(table, uri string, gotCols, wantCols []any) {
		if fmt.Sprint(gotCols) != fmt.Sprint(wantCols) {
			add("%s %s:\n      got  %v\n      want %v", table, uri, gotCols, wantCols)
		}
	}
	for _, a := range snap.Accounts {
		u, ok := got.Users[a.DID]
		if !ok {
			add("users: missing %s (%s)", a.DID, a.Name)
			continue
		}
		if a.Handle != "" && u.Handle != strings.ToLower(a.Handle) {
			add("users %s: handle %q, the PDS says %q", a.DID, u.Handle, a.Handle)
		}
		if acc := got.Accounts[a.DID]; acc.Status != a.Status || acc.Active != a.Active {
			add("backfill_accounts %s (%s): %s active=%v, the PDS says %s active=%v", a.DID, a.Name, acc.Status, acc.Active, a.Status, a.Active)
		}
		profile := false
		for _, r := range a.Records {
			var v recordJSON
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Fatalf("%s: %v", r.URI, err)
			}
			collection := strings.Split(strings.TrimPrefix(r.URI, "at://"), "/")[1]
			var subject struct{ URI string }
			var subjectDID string
			if len(v.Subject) > 0 && json.Unmarshal(v.Subject, &subject) != nil {
				json.Unmarshal(v.Subject, &subjectDID)
			}
			switch collection {
			case "app.bsky.feed.post":
				want["posts"][r.URI] = true
				p, ok := got.Posts[r.URI]
				if !ok {
					add("posts: missing %s", r.URI)
					continue
				}
				var parent, root string
				if v.Reply != nil {
					parent, root = v.Reply.Parent.URI, v.Reply.Root.URI
				}
				tags := slices.Clone(v.Tags)
				for _, f := range v.Facets {
					for _, ft := range f.Features {
						if ft.Type == "app.bsky.richtext.facet#tag" && !slices.Contains(tags, ft.Tag) {
							tags = append(tags, ft.Tag)
						}
					}
				}
				tagsJSON, _ := json.Marshal(append([]string{}, tags...))
				var facets []byte
				if v.Facets != nil {
					var raw struct{ Facets json.RawMessage }
					json.Unmarshal(r.Value, &raw)
					facets = raw.Facets
				}
				check("posts", r.URI,
					[]any{p.CID, p.AuthorDID, p.Text, p.ParentURI, p.RootURI, normJSON(p.Embed), normJSON(p.Facets), normJSON(p.Tags), ts(p.CreatedAt)},
					[]any{r.CID, a.DID, v.Text, parent, root, normJSON(nilIfEmpty(v.Embed)), normJSON(facets), normJSON(tagsJSON), created(v.CreatedAt)})
			case "app.bsky.feed.like", "app.bsky.feed.repost":
				table, rows := "likes", got.Likes
				if collection == "app.bsky.feed.repost" {
					table, rows = "reposts", got.Reposts
				}
				want[table][r.URI] = true
				s, ok := rows[r.URI]
				if !ok {
					add("%s: missing %s", table, r.URI)
					continue
				}
				check(table, r.URI, []any{s.UserDID, s.PostURI, ts(s.CreatedAt)}, []any{a.DID, subject.URI, created(v.CreatedAt)})
			case "app.bsky.graph.follow", "app.bsky.graph.block":
				table, rows := "follows", got.Follows
				if collection == "app.bsky.graph.block" {
					table, rows = "blocks", got.Blocks
				}
				want[table][r.URI] = true
				g, ok := rows[r.URI]
				if !ok {
					add("%s: missing %s", table, r.URI)
					continue
				}
				check(table, r.URI, []any{g.ActorDID, g.SubjectDID, ts(g.CreatedAt)}, []any{a.DID, subjectDID, created(v.CreatedAt)})
				if _, ok := got.Users[subjectDID]; !ok {
					add("users: missing %s, the subject of %s", subjectDID, r.URI)
				}
			case "app.bsky.actor.profile":
				profile = true
				blobCID := func(b *struct{ Ref struct{ Link string `json:"$link"` } }) *string {
					if b == nil {
						return nil
					}
					return &b.Ref.Link
				}
				check("users", a.DID,
					[]any{deref(u.DisplayName), deref(u.Description), deref(u.AvatarURL), deref(u.BannerURL), normJSON(u.PinnedPost), normJSON(u.ProfileRecord)},
					[]any{deref(v.DisplayName), deref(v.Description), deref(blobCID(v.Avatar)), deref(blobCID(v.Banner)), normJSON(nilIfEmpty(v.PinnedPost)), normJSON(r.Value)})
			default:
				add("the snapshot holds a record of %s", collection)
			}
		}
		if !profile && (u.DisplayName != nil || u.Description != nil || u.AvatarURL != nil || u.BannerURL != nil || u.PinnedPost != nil || u.ProfileRecord != nil) {
			add("users %s (%s): profile columns set, the PDS holds no profile", a.DID, a.Name)
		}
	}
	for table, rows := range map[string][]string{
		"posts": keys(got.Posts), "likes": keys(got.Likes), "reposts": keys(got.Reposts),
		"follows": keys(got.Follows), "blocks": keys(got.Blocks),
	} {
		for _, uri := range rows {
			if !want[table][uri] {
				add("%s: %s has no record on the PDS", table, uri)
			}
		}
		if len(want[table]) == 0 {
			add("%s: the PDS holds no record of this table; the script should make some", table)
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		t.Errorf("the database differs from what the PDS holds:\n  %s", strings.Join(diffs, "\n  "))
	}
}

func nilIfEmpty(b json.RawMessage) []byte {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return b
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
