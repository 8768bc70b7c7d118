//go:build !linux

package loader

// background: thread priorities are left alone off Linux.
func background() {}
