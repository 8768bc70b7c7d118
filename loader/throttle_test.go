package loader

import (
	"context"
	"errors"
	"testing"
)

func TestThrottle(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	t.Run("no cap never waits", func(t *testing.T) {
		l := &Loader{}
		if err := l.throttle(cancelled, 1_000_000); err != nil {
			t.Fatalf("got %v, want nil", err)
		}
	})
	t.Run("within the cap does not wait", func(t *testing.T) {
		l := &Loader{cfg: Config{MaxEventsPerSec: 1e9}}
		if err := l.throttle(cancelled, 10); err != nil {
			t.Fatalf("got %v, want nil", err)
		}
	})
	t.Run("ahead of the cap waits", func(t *testing.T) {
		// 1,000 events at 100/s are due 10 s after the first commit: throttle must wait, so
		// with a cancelled context it returns the context's error instead of nil.
		l := &Loader{cfg: Config{MaxEventsPerSec: 100}}
		if err := l.throttle(cancelled, 1000); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want it to wait (context.Canceled)", err)
		}
		if l.rateEvents != 1000 {
			t.Fatalf("counted %d events, want 1000", l.rateEvents)
		}
	})
}
