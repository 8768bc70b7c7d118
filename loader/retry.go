package loader

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// transient reports whether err may go away when the transaction is retried on a new
// connection: lost connections, server shutdown and startup, serialization failures and
// deadlocks.
func transient(err error) bool {
	if err == nil {
		return false
	}
	var safe *retrySafeError
	if errors.As(err, &safe) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", // admin_shutdown (pg_terminate_backend, fast shutdown)
			"57P02", // crash_shutdown
			"57P03", // cannot_connect_now (starting up, shutting down, recovering)
			"40001", // serialization_failure
			"40P01", // deadlock_detected
			"53300": // too_many_connections
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08") // connection_exception class
	}
	if errors.Is(err, ErrLocked) || errors.Is(err, ErrSchema) {
		return false
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true // the server went away (restart): keep trying within the policy
	}
	if errors.Is(err, pgconn.ErrConnClosed) || pgconn.SafeToRetry(err) {
		return true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var netErr *net.OpError
	return errors.As(err, &netErr)
}
