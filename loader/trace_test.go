package loader

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The statement profile of the benchmarks (LOADER_TRACE=1): the server logs every statement's
// duration for the loader's session (log_min_duration_statement = 0, which needs a superuser),
// and the benchmark adds them up by statement shape from the server log, printed on stderr.
// The logging itself slows the load down: compare the statements with each other, not the
// run with others.

// traceStatements starts the statement profile of l's session when LOADER_TRACE is set; the
// function it returns prints it.
func traceStatements(b *testing.B, l *Loader) func() {
	if os.Getenv("LOADER_TRACE") == "" {
		return func() {}
	}
	exec(b, l.conn, "SET log_min_duration_statement = 0")
	start := logOffset()
	return func() {
		prof, err := statementProfile(start, backendPID(l))
		if err != nil {
			b.Fatalf("statement profile: %v", err)
		}
		fmt.Fprint(os.Stderr, prof)
	}
}

// serverLog is where the test cluster writes its log.
const serverLog = "/var/log/postgresql/postgresql-15-main.log"

// logOffset returns the server log's size, where a profile starts reading.
func logOffset() int64 {
	fi, err := os.Stat(serverLog)
	if err != nil {
		return 0
	}
	return fi.Size()
}

var (
	logDuration = regexp.MustCompile(`\[(\d+)\] .*duration: ([0-9.]+) ms  (?:(parse|bind|execute) [^:]*|statement): (.*)`)
	logNoise    = regexp.MustCompile(`\$\d+|\s+`)
)

// statementProfile returns the server time of pid's statements logged since offset, by shape.
func statementProfile(offset int64, pid uint32) (string, error) {
	f, err := os.Open(serverLog)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "", err
	}
	total := map[string]time.Duration{}
	calls := map[string]int{}
	var sum time.Duration
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	want := strconv.FormatUint(uint64(pid), 10)
	for sc.Scan() {
		m := logDuration.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != want {
			continue
		}
		ms, _ := strconv.ParseFloat(m[2], 64)
		d := time.Duration(ms * float64(time.Millisecond))
		k := strings.TrimSpace(logNoise.ReplaceAllString(m[4], " "))
		if len(k) > 100 {
			k = k[:100]
		}
		if m[3] != "" && m[3] != "execute" {
			k = m[3] + ": " + k
		}
		total[k] += d
		calls[k]++
		sum += d
	}
	keys := make([]string, 0, len(total))
	for k := range total {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return int(total[b] - total[a]) })
	var sb strings.Builder
	fmt.Fprintf(&sb, "server time of the loader's statements: %v\n", sum.Round(time.Millisecond))
	for _, k := range keys {
		fmt.Fprintf(&sb, "%9v %4d  %s\n", total[k].Round(100*time.Microsecond), calls[k], k)
	}
	return sb.String(), sc.Err()
}
