package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// sendTimeout bounds one NOTIFY round trip; past it the connection is
	// taken for dead and replaced.
	sendTimeout = 10 * time.Second
	// idlePing is how long the listening connection may stay quiet before
	// it is pinged, so that a connection that died silently is replaced.
	idlePing = 30 * time.Second
	// closeTimeout bounds saying goodbye to the server.
	closeTimeout = 2 * time.Second
)

// notifySQL sends every payload of a batch in one statement, on the
// relay's own connection: never inside a writing transaction, where NOTIFY
// would serialize the commits.
const notifySQL = `SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload`

// NewRelay starts the relay of hub and signals on the PostgreSQL at dsn:
// it connects twice (one connection LISTENs on opts.Channel, the other
// sends NOTIFYs) and listens before it returns, so call it before serving.
// ctx bounds only the connecting; the relay runs until Close. hub and
// signals must not have a relay already.
func NewRelay(ctx context.Context, dsn string, hub *Hub, signals *Signals, opts RelayOptions) (*Relay, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("start relay: %w", err)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("start relay: parse the database address: %w", err)
	}
	return newRelay(ctx, pgTransport{cfg: cfg, channel: opts.Channel, replica: opts.ReplicaID}, hub, signals, opts)
}

// pgTransport is a relay's transport over PostgreSQL's LISTEN/NOTIFY, on
// dedicated pgx connections (never from the store's pool: a listening
// connection is busy for good).
type pgTransport struct {
	cfg     *pgx.ConnConfig
	channel string
	replica string
}

// connect opens a connection that pg_stat_activity shows as the relay's.
func (t pgTransport) connect(ctx context.Context, role string) (*pgx.Conn, error) {
	cfg := t.cfg.Copy()
	name := "parley relay " + role + " " + t.replica
	cfg.RuntimeParams["application_name"] = name[:min(len(name), maxName)]
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect the relay's %s: %w", role, err)
	}
	return conn, nil
}

func (t pgTransport) listen(ctx context.Context) (listener, error) {
	conn, err := t.connect(ctx, "listener")
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{t.channel}.Sanitize()); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("listen on %q: %w", t.channel, err)
	}
	return pgListener{conn}, nil
}

func (t pgTransport) notifier(ctx context.Context) (notifier, error) {
	conn, err := t.connect(ctx, "notifier")
	if err != nil {
		return nil, err
	}
	return pgNotifier{conn: conn, channel: t.channel}, nil
}

// pgListener is a connection that LISTENs.
type pgListener struct{ conn *pgx.Conn }

// next waits for the next notification, pinging the server whenever it
// has been quiet for idlePing.
func (l pgListener) next(ctx context.Context) (string, error) {
	for {
		waitCtx, cancel := context.WithTimeout(ctx, idlePing)
		n, err := l.conn.WaitForNotification(waitCtx)
		cancel()
		if err == nil {
			return n.Payload, nil
		}
		if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return "", fmt.Errorf("wait for a notification: %w", err)
		}
		pingCtx, cancel := context.WithTimeout(ctx, sendTimeout)
		err = l.conn.Ping(pingCtx)
		cancel()
		if err != nil {
			return "", fmt.Errorf("ping the quiet listening connection: %w", err)
		}
	}
}

func (l pgListener) close() { closeConn(l.conn) }

// pgNotifier is a connection that sends NOTIFYs.
type pgNotifier struct {
	conn    *pgx.Conn
	channel string
}

func (n pgNotifier) send(ctx context.Context, payloads []string) error {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	if _, err := n.conn.Exec(ctx, notifySQL, n.channel, payloads); err != nil {
		return fmt.Errorf("notify %d payloads: %w", len(payloads), err)
	}
	return nil
}

func (n pgNotifier) close() { closeConn(n.conn) }

// closeConn closes conn, waiting a little for the server to hear it.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = conn.Close(ctx) // the connection is gone either way
}
