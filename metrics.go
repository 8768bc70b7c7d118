package main

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/backfill/backfill/decode"
	"github.com/backfill/backfill/loader"
)

// MetricsFlags enable the metrics endpoint.
type MetricsFlags struct {
	MetricsAddr string `help:"Serve Prometheus metrics at /metrics and a self-refreshing status page at / on this address (e.g. 127.0.0.1:9090); empty means off." env:"BACKFILL_METRICS_ADDR"`
}

// collector reads the stages' live counters at scrape time.
type collector struct {
	fetch *fetchJob
	load  *loadJob
}

var (
	descFetchFrames   = prometheus.NewDesc("backfill_fetch_frames_total", "Frames received from the relay.", nil, nil)
	descFetchBytes    = prometheus.NewDesc("backfill_fetch_received_bytes_total", "Frame bytes received from the relay.", nil, nil)
	descFetchKept     = prometheus.NewDesc("backfill_fetch_kept_frames_total", "Frames written to the spool.", nil, nil)
	descFetchDropped  = prometheus.NewDesc("backfill_fetch_dropped_frames_total", "Frames not written, by reason.", []string{"reason"}, nil)
	descFetchDisk     = prometheus.NewDesc("backfill_fetch_disk_bytes_total", "Compressed bytes written to segment files.", nil, nil)
	descFetchRaw      = prometheus.NewDesc("backfill_fetch_raw_bytes_total", "Raw frame bytes appended to the spool.", nil, nil)
	descFetchSegs     = prometheus.NewDesc("backfill_fetch_segments_sealed_total", "Segments sealed.", nil, nil)
	descFetchReconn   = prometheus.NewDesc("backfill_fetch_reconnects_total", "Reconnections to the relay.", nil, nil)
	descFetchSeq      = prometheus.NewDesc("backfill_fetch_last_seq", "Seq of the last frame written to the spool.", nil, nil)
	descFetchStop     = prometheus.NewDesc("backfill_fetch_stop_seq", "Seq the fetch stops at (0 when unknown).", nil, nil)
	descFetchLag      = prometheus.NewDesc("backfill_fetch_lag_seconds", "Now minus the event time of the last frame written.", nil, nil)
	descLoadSegs      = prometheus.NewDesc("backfill_load_segments_done_total", "Segments loaded or skipped as already loaded.", nil, nil)
	descLoadSegsTotal = prometheus.NewDesc("backfill_load_segments_seen_total", "Sealed segments seen in the spool.", nil, nil)
	descLoadFrames    = prometheus.NewDesc("backfill_load_frames_total", "Frames read from segments.", nil, nil)
	descLoadEvents    = prometheus.NewDesc("backfill_load_events_total", "Events committed, by type.", []string{"type"}, nil)
	descLoadRows      = prometheus.NewDesc("backfill_load_rows_total", "Rows inserted, updated or deleted, by table.", []string{"table"}, nil)
	descLoadSkipped   = prometheus.NewDesc("backfill_load_skipped_total", "Input skipped or repaired, by reason.", []string{"reason"}, nil)
	descLoadSeq       = prometheus.NewDesc("backfill_load_last_seq", "Highest seq committed to the database.", nil, nil)
	descLoadLag       = prometheus.NewDesc("backfill_load_lag_seconds", "Now minus the event time of the last committed seq.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	lag := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return time.Since(t).Seconds()
	}
	if f := c.fetch; f != nil {
		st := &f.stats
		counter(descFetchFrames, st.Frames.Load())
		counter(descFetchBytes, st.BytesIn.Load())
		counter(descFetchKept, st.Kept.Load())
		counter(descFetchDropped, st.Duplicates.Load(), "duplicate")
		counter(descFetchDropped, st.Backwards.Load(), "backwards")
		counter(descFetchDropped, st.BeforeStart.Load(), "before_window")
		counter(descFetchDropped, st.BadFrames.Load(), "bad_frame")
		counter(descFetchDropped, st.Infos.Load(), "info")
		counter(descFetchDropped, st.ErrorFrames.Load(), "error_frame")
		counter(descFetchReconn, st.Reconnects.Load())
		ws := f.writer.Stats()
		counter(descFetchDisk, ws.DiskBytes)
		counter(descFetchRaw, ws.RawBytes)
		counter(descFetchSegs, ws.Segments)
		gauge(descFetchSeq, float64(st.LastSeq.Load()))
		gauge(descFetchStop, float64(st.StopSeq.Load()))
		var t time.Time
		if us := st.LastTime.Load(); us != 0 {
			t = time.UnixMicro(us)
		}
		gauge(descFetchLag, lag(t))
	}
	if l := c.load; l != nil {
		st := l.l.Stats()
		counter(descLoadSegs, st.SegmentsDone.Load())
		counter(descLoadSegsTotal, st.SegmentsTotal.Load())
		counter(descLoadFrames, st.Frames.Load())
		for k := decode.KindUnknown; k <= decode.KindError; k++ {
			counter(descLoadEvents, st.Events[k].Load(), k.String())
		}
		for t := loader.Table(0); t < loader.NumTables; t++ {
			counter(descLoadRows, st.Rows[t].Load(), t.String())
		}
		for r, n := range st.Reasons() {
			counter(descLoadSkipped, n, string(r))
		}
		gauge(descLoadSeq, float64(st.LastSeq.Load()))
		gauge(descLoadLag, lag(st.LastEventTime()))
	}
}

var statusPage = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>backfill</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
pre{background:#f4f4f4;padding:1em;border-radius:6px;overflow-x:auto}
h1{font-size:1.3em}small{color:#777}</style></head>
<body><h1>backfill {{.Version}}</h1>
{{range .Stages}}<h2>{{.Name}}</h2><pre>{{.Line}}</pre>{{else}}<p>starting…</p>{{end}}
<p><small>updated {{.Now}} · refreshes every 2 s · <a href="/metrics">/metrics</a></small></p>
</body></html>`))

// serveMetrics starts the metrics server when addr is set; it stops when ctx ends.
func serveMetrics(ctx context.Context, addr string, c *collector, prog *progress, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		type stage struct{ Name, Line string }
		var stages []stage
		for i, s := range prog.stages {
			stages = append(stages, stage{s.name(), prog.latest(i)})
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = statusPage.Execute(w, map[string]any{"Version": buildVersion(), "Stages": stages, "Now": time.Now().UTC().Format(time.RFC3339)})
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", "http://"+ln.Addr().String()+"/metrics")
	return nil
}
