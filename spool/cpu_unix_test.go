//go:build unix

package spool

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user and system) this process has used so far, so benchmarks can
// report a cost that does not depend on how busy the shared machine is.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
