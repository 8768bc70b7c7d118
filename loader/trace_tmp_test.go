package loader

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

type tmpTracer struct {
	start time.Time
	tot   map[string]time.Duration
}

func (t *tmpTracer) key(sql string) string {
	sql = strings.Join(strings.Fields(sql), " ")
	if len(sql) > 70 {
		sql = sql[:70]
	}
	return sql
}
func (t *tmpTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	t.start = time.Now()
	if d.SQL == "" {
		t.tot[fmt.Sprintf("empty args=%d", len(d.Args))] += 0
	}
	return context.WithValue(ctx, "sql", d.SQL)
}
func (t *tmpTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	s, _ := ctx.Value("sql").(string)
	t.tot[t.key(s)] += time.Since(t.start)
}
func (t *tmpTracer) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceCopyFromStartData) context.Context {
	t.start = time.Now()
	return context.WithValue(ctx, "sql", "COPY "+d.TableName.Sanitize())
}
func (t *tmpTracer) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceCopyFromEndData) {
	s, _ := ctx.Value("sql").(string)
	t.tot[s] += time.Since(t.start)
}

func TestTmpTrace(t *testing.T) {
	if os.Getenv("TMPTRACE") == "" {
		t.Skip()
	}
	const n = 100_000
	evs := benchEvents(n)
	dir := t.TempDir()
	var cuts []int
	for i := 9999; i < n; i += 10000 {
		cuts = append(cuts, i)
	}
	writeSpool(t, dir, evs, cuts...)
	url := testDB(t)
	l := openLoader(t, Config{DatabaseURL: url, Workers: 2})
	tr := &tmpTracer{tot: map[string]time.Duration{}}
	l.connCfg.Tracer = tr
	l.conn.Close(context.Background())
	st := time.Now()
	sum, err := l.Run(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("total", time.Since(st), sum.WriteTime, sum.DecodeTime, sum.WaitTime)
	type kv struct {
		k string
		v time.Duration
	}
	var all []kv
	for k, v := range tr.tot {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	for _, e := range all {
		fmt.Printf("%10v %s\n", e.v.Round(time.Millisecond), e.k)
	}
}
