//go:build unix

package main

import "syscall"

// syncDisks has the kernel write back every dirty page before the benchmark times the next run.
func syncDisks() { syscall.Sync() }
