package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// stageView is what a stage (fetch, load) shows: a bar position and a text line, or log fields.
type stageView interface {
	name() string
	// view returns progress as done/total (total 0: unknown), a one-line text, and the same
	// figures as slog attributes; dt is the time since the previous call (rates are over it).
	view(dt time.Duration) (done, total int64, line string, attrs []any)
}

// progress draws a live display on a terminal (mpb), or logs a line every interval otherwise.
// Progress is not logging: the live display goes to stderr and disappears when done.
type progress struct {
	mode     string // tty, log, none
	log      *slog.Logger
	interval time.Duration
	stages   []stageView
	p        *mpb.Progress
	bars     []*mpb.Bar
	lines    []string // the last line of each stage, for the live display and the status page
	mu       sync.Mutex
	quit     chan struct{}
	wg       sync.WaitGroup
}

func newProgress(mode string, log *slog.Logger) *progress {
	if mode == "auto" {
		mode = "log"
		if term.IsTerminal(int(os.Stderr.Fd())) {
			mode = "tty"
		}
	}
	return &progress{mode: mode, log: log, interval: 10 * time.Second, quit: make(chan struct{})}
}

func (p *progress) add(s stageView) {
	p.stages = append(p.stages, s)
	p.lines = append(p.lines, "")
}

// latest returns stage i's last line.
func (p *progress) latest(i int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lines[i]
}

// alwaysTick keeps lines fresh (for the status page) even when nothing is displayed.
func (p *progress) alwaysTick() {
	if p.mode == "none" {
		p.mode = "quiet"
	}
}

func (p *progress) start() {
	switch p.mode {
	case "none":
		return
	case "quiet":
		p.interval = 2 * time.Second
	case "tty":
		p.interval = 500 * time.Millisecond
		p.p = mpb.New(mpb.WithOutput(os.Stderr), mpb.WithRefreshRate(250*time.Millisecond), mpb.WithWidth(24))
		for i, s := range p.stages {
			i := i
			bar := p.p.AddBar(0,
				mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-5s", s.name())), decor.Percentage(decor.WC{W: 5}), decor.Name(" ")),
				mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
					p.mu.Lock()
					defer p.mu.Unlock()
					return p.lines[i]
				})),
			)
			p.bars = append(p.bars, bar)
		}
	}
	p.wg.Add(1)
	go p.loop()
}

func (p *progress) loop() {
	defer p.wg.Done()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-p.quit:
			return
		case now := <-t.C:
			p.tick(now.Sub(last))
			last = now
		}
	}
}

func (p *progress) tick(dt time.Duration) {
	for i, s := range p.stages {
		done, total, line, attrs := s.view(dt)
		p.mu.Lock()
		p.lines[i] = line
		p.mu.Unlock()
		switch p.mode {
		case "tty":
			if total > 0 {
				p.bars[i].SetTotal(total, false)
			}
			p.bars[i].SetCurrent(min(done, max(total, done)))
		case "log":
			p.log.Info(s.name()+" progress", attrs...)
		}
	}
}

func (p *progress) stop() {
	if p.mode == "none" {
		return
	}
	close(p.quit)
	p.wg.Wait()
	if p.p != nil {
		for _, b := range p.bars {
			b.Abort(false)
		}
		p.p.Wait()
	}
}

// rate formats a per-second rate with a unit.
func rate(n int64, dt time.Duration, unit string) string {
	if dt <= 0 {
		return "0 " + unit + "/s"
	}
	return humanCount(float64(n)/dt.Seconds()) + " " + unit + "/s"
}

func humanCount(v float64) string {
	switch {
	case v >= 10e6:
		return fmt.Sprintf("%.0fM", v/1e6)
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 10e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// eta estimates the time left from what remains and the rate it went down at over dt.
func eta(remaining, progressed int64, dt time.Duration) string {
	if remaining <= 0 {
		return "0s"
	}
	if progressed <= 0 || dt <= 0 {
		return "?"
	}
	d := time.Duration(float64(remaining) / float64(progressed) * float64(dt))
	return d.Round(time.Second).String()
}

func lagString(t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return time.Since(t).Round(time.Second).String()
}

// table renders rows of cells as aligned columns.
func table(rows [][]string) string {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := widths[i] - len([]rune(c))
			if i == 0 {
				b.WriteString(c + strings.Repeat(" ", pad))
			} else {
				b.WriteString(strings.Repeat(" ", pad) + c)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
