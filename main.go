// Command backfill backfills AT Protocol firehose history into an AppView's PostgreSQL.
//
// Stage one (fetch) streams raw subscribeRepos frames into a spool of zstd segment files;
// stage two (load) decodes sealed segments and bulk-loads PostgreSQL with COPY. `run` (the
// default command) does both at once. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise it comes from
// the module build info (go install ...@version) or reads "dev".
var version = ""

// Globals are the flags every command takes.
type Globals struct {
	LogLevel  string `help:"Log level: debug, info, warn or error." default:"info" enum:"debug,info,warn,error" env:"BACKFILL_LOG_LEVEL"`
	LogFormat string `help:"Log format: text or json (logs go to stderr)." default:"text" enum:"text,json" env:"BACKFILL_LOG_FORMAT"`
	Progress  string `help:"Progress display: auto (a live display on a terminal, a periodic log line otherwise), tty, log or none." default:"auto" enum:"auto,tty,log,none" env:"BACKFILL_PROGRESS"`

	logger *slog.Logger
}

// CLI is the command line.
type CLI struct {
	Globals

	Version kong.VersionFlag `help:"Print the version and exit."`

	Run    RunCmd    `cmd:"" default:"withargs" help:"Fetch and load together in one process (the default command: 'backfill --days 30')."`
	Fetch  FetchCmd  `cmd:"" help:"Stream a relay's firehose into the spool."`
	Load   LoadCmd   `cmd:"" help:"Load sealed spool segments into PostgreSQL."`
	Status StatusCmd `cmd:"" help:"Show the spool and the database's progress."`
	Spool  SpoolCmd  `cmd:"" help:"Inspect and repair the spool."`
}

// errInterrupted marks a run stopped by SIGINT/SIGTERM after it made its state durable.
var errInterrupted = errors.New("interrupted")

func main() {
	os.Exit(run(os.Args[1:]))
}

// tuneGC trades memory the process does not need for CPU the database does: a load keeps a
// live heap of 130-200 MB (the unit being written and the next one, up to 80k frames each)
// and allocates fast, so the default GOGC=100 spent about a core-second in ten on collections.
// GOGC=300 collects a third as often; a soft limit of 400 MiB makes the collector work harder
// well before the heap could near the 500 MB a load may take (at 320 MiB it took a tenth more
// CPU with units that size). GOGC and GOMEMLIMIT in the environment win. Only the commands that
// load take it: fetch keeps a small heap that the default collects often enough (under
// GOGC=300 its peak RSS doubled, 49 -> 98 MiB, for no speed it needed).
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(300)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(400 << 20)
	}
}

func run(args []string) int {
	var cli CLI
	parser, err := kong.New(&cli,
		kong.Name("backfill"),
		kong.Description("Backfill AT Protocol firehose history into an AppView's PostgreSQL: fetch raw frames into a spool near the relay, load them with COPY near the database, or both at once."),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Vars{"version": buildVersion()},
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "backfill:", err)
		return 2
	}
	kctx, err := parser.Parse(joinNegativeValues(args))
	if err != nil {
		parser.Errorf("%s", err)
		return 2
	}
	cli.logger = newLogger(cli.LogLevel, cli.LogFormat)
	if loads(kctx.Command()) {
		tuneGC()
	}

	ctx, stop := signalContext()
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	err = kctx.Run(&cli.Globals)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errInterrupted) || errors.Is(err, context.Canceled) && ctx.Err() != nil:
		cli.logger.Info("interrupted; state is durable", "exit", 130)
		return 130
	default:
		fmt.Fprintln(os.Stderr, "backfill:", err)
		return 1
	}
}

// loads reports whether the command (kong's path of it, "load" or "run ...") loads a database.
func loads(command string) bool {
	name, _, _ := strings.Cut(command, " ")
	return name == "load" || name == "run"
}

// joinNegativeValues turns "--days -1" into "--days=-1", so the replaced tool's usage works as
// written: a bare negative number would otherwise read as a short flag. No short flag is a digit.
func joinNegativeValues(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "--") && !strings.Contains(a, "=") && i+1 < len(args) && isNegativeNumber(args[i+1]) {
			out = append(out, a+"="+args[i+1])
			i++
			continue
		}
		out = append(out, a)
	}
	return out
}

func isNegativeNumber(s string) bool {
	if len(s) < 2 || s[0] != '-' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// signalContext is cancelled by the first SIGINT/SIGTERM; a second one exits at once
// (whatever is in flight stays recoverable: the spool truncates a torn tail on reopen and the
// database rolls back an open transaction).
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ch
		fmt.Fprintln(os.Stderr, "\nbackfill: stopping: finishing the frame in hand and making everything durable (signal again to exit now)")
		cancel()
		<-ch
		fmt.Fprintln(os.Stderr, "backfill: exiting now")
		os.Exit(130)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

func newLogger(level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(strings.ToUpper(level)))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if v == "" || v == "(devel)" {
			v = "dev"
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			return v + " (" + rev + dirty + ", " + bi.GoVersion + ")"
		}
		return v + " (" + bi.GoVersion + ")"
	}
	return "dev"
}
