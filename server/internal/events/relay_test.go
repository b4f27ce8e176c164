package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/clock"
)

// defaultTestPostgres is the server the tests use when PARLEY_TEST_POSTGRES
// names none.
const defaultTestPostgres = "postgres://127.0.0.1:5432/test?sslmode=disable"

// testDSN returns the PostgreSQL to test against, skipping the test only
// if none is named and the default one is unreachable.
func testDSN(t *testing.T) string {
	t.Helper()
	if dsn := os.Getenv("PARLEY_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	conn, err := net.DialTimeout("tcp", "127.0.0.1:5432", time.Second)
	if err != nil {
		t.Skipf("PARLEY_TEST_POSTGRES is unset and no PostgreSQL answers on 127.0.0.1:5432 (%v): skipping the relay tests", err)
	}
	conn.Close()
	return defaultTestPostgres
}

// replica is one replica's hub, signals and relay, with what its hooks saw.
type replica struct {
	hub         *Hub
	signals     *Signals
	relay       *Relay
	id          string
	revocations atomic.Int32
	configs     atomic.Int32
	sendLags    atomic.Int32
	receiveLags atomic.Int32
}

// cluster starts replicas named names on one fresh channel. Their relays
// are closed when the test ends, and then no relay goroutine may remain.
func cluster(t *testing.T, opts RelayOptions, names ...string) []*replica {
	t.Helper()
	dsn := testDSN(t)
	baseline := runtime.NumGoroutine()
	t.Cleanup(func() { checkNoRelayGoroutines(t, baseline) })
	var suffix [8]byte
	rand.Read(suffix[:])
	opts.Channel = "parley_test_" + hex.EncodeToString(suffix[:])
	if opts.Poll == 0 {
		opts.Poll = time.Hour // so that only hints wake waiters
	}
	var out []*replica
	for _, name := range names {
		r := &replica{hub: NewHub(), signals: NewSignals(), id: opts.Channel + "-" + name}
		o := opts
		o.ReplicaID = r.id
		o.OnRevocation = func() { r.revocations.Add(1) }
		o.OnConfigChange = func() { r.configs.Add(1) }
		o.SendLag = func(time.Duration) { r.sendLags.Add(1) }
		o.ReceiveLag = func(time.Duration) { r.receiveLags.Add(1) }
		o.Log = slog.New(slog.NewTextHandler(t.Output(), nil)).With("test_replica", name)
		relay, err := NewRelay(t.Context(), dsn, r.hub, r.signals, o)
		if err != nil {
			t.Fatalf("start replica %s: %v", name, err)
		}
		r.relay = relay
		t.Cleanup(relay.Close)
		out = append(out, r)
	}
	return out
}

// checkNoRelayGoroutines fails unless the goroutines soon number no more
// than baseline: every one a relay or pgx started has ended.
func checkNoRelayGoroutines(t *testing.T, baseline int) {
	t.Helper()
	for range 100 {
		if runtime.NumGoroutine() <= baseline {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Errorf("%d goroutines left after Close, %d before the relays started:\n%s",
		runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
}

// closedWithin fails unless ch is closed within d.
func closedWithin(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s: not woken within %v", what, d)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// backendOf returns the pid of the relay connection of replica id in role
// ("listener" or "notifier").
func backendOf(t *testing.T, admin *pgx.Conn, id, role string) int32 {
	t.Helper()
	var pid int32
	name := "parley relay " + role + " " + id
	err := admin.QueryRow(t.Context(), `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, name).Scan(&pid)
	if err != nil {
		t.Fatalf("find the backend of %q: %v", name, err)
	}
	return pid
}

// terminate ends the backend pid, as a server restart or a network cut would.
func terminate(t *testing.T, admin *pgx.Conn, pid int32) {
	t.Helper()
	var ok bool
	if err := admin.QueryRow(t.Context(), `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("terminate backend %d: %v (terminated: %v)", pid, err, ok)
	}
}

func adminConn(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), testDSN(t))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestRelayWakesOtherReplicas(t *testing.T) {
	rs := cluster(t, RelayOptions{}, "a", "b")
	a, b := rs[0], rs[1]
	key := ConversationKey(uuid.NewString())
	onA, onB := a.hub.Wait(key), b.hub.Wait(key)
	a.hub.Notify(key)
	if !isClosed(onA) {
		t.Fatal("the notifying replica's own waiter was not woken at once")
	}
	closedWithin(t, onB, time.Second, "the other replica's waiter")
	// The sender observes its lag once the NOTIFY returns, which may be
	// after the receiver got it.
	for i := 0; a.sendLags.Load() == 0 && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if a.sendLags.Load() == 0 || b.receiveLags.Load() == 0 {
		t.Errorf("lags observed: sent %d, received %d; want both", a.sendLags.Load(), b.receiveLags.Load())
	}

	// A revocation and a configuration change drop the other replica's
	// caches before its waiters wake; the hooks see nothing else.
	if b.revocations.Load() != 0 || b.configs.Load() != 0 {
		t.Fatalf("hooks called for a conversation key: revocations %d, config %d", b.revocations.Load(), b.configs.Load())
	}
	token := TokenKey(uuid.NewString())
	onToken, onConfig := b.hub.Wait(token), b.hub.Wait(ConfigKey)
	a.hub.Notify(token, ConfigKey)
	closedWithin(t, onToken, time.Second, "the revoked token's waiter")
	closedWithin(t, onConfig, time.Second, "the configuration's waiter")
	if b.revocations.Load() != 1 || b.configs.Load() != 1 {
		t.Errorf("after a revocation and a config change: revocations %d, config %d; want 1 and 1", b.revocations.Load(), b.configs.Load())
	}
}

func TestRelayIgnoresItsOwnNotifications(t *testing.T) {
	rs := cluster(t, RelayOptions{}, "a", "b")
	a, b := rs[0], rs[1]
	key := TokenKey(uuid.NewString())
	onB := b.hub.Wait(key)
	a.hub.Notify(key)
	// Taken after the local wake: only A's own notification could wake it.
	again := a.hub.Wait(key)
	closedWithin(t, onB, time.Second, "the other replica's waiter")

	// A's notification is committed; one from B committed after it reaches
	// A after it, so once B's arrives, A has had its own.
	marker := ConversationKey(uuid.NewString())
	onMarker := a.hub.Wait(marker)
	b.hub.Notify(marker)
	closedWithin(t, onMarker, time.Second, "the marker's waiter")
	if isClosed(again) {
		t.Error("a replica's own notification woke its waiter a second time")
	}
	if a.revocations.Load() != 0 {
		t.Errorf("a replica's own revocation notice reached its hook %d times", a.revocations.Load())
	}
}

func TestRelaySignalsCarryTheirPayloads(t *testing.T) {
	rs := cluster(t, RelayOptions{}, "a", "b")
	a, b := rs[0], rs[1]
	key := ConversationKey(uuid.NewString())
	onA, stopA := a.signals.Subscribe(key)
	defer stopA()
	onB, stopB := b.signals.Subscribe(key)
	defer stopB()

	who := &parleyv1.Participant{Role: parleyv1.ParticipantRole_PARTICIPANT_ROLE_AGENT, Id: uuid.NewString(), DisplayName: "Zoë <\"agent\">"}
	typing := &parleyv1.Typing{Participant: who, Typing: true, ExpireTime: timestamppb.New(time.Unix(1700000000, 5))}
	cursor := &parleyv1.ReadCursor{Participant: who, DeliveredSeq: 7, ReadSeq: 5, UpdateTime: timestamppb.New(time.Unix(1700000001, 0))}
	a.signals.Publish(key, Signal{From: "p1", Payload: typing})
	a.signals.Publish(key, Signal{From: "p2", Payload: cursor})
	// Payloads that are no proto message stay on their replica.
	a.signals.Publish(key, Signal{From: "p3", Payload: 42})
	marker := &parleyv1.Typing{Typing: false}
	a.signals.Publish(key, Signal{From: "p4", Payload: marker})

	want := []Signal{{"p1", typing}, {"p2", cursor}, {"p4", marker}}
	for i, w := range want {
		select {
		case got := <-onB:
			msg, ok := got.Payload.(proto.Message)
			if got.From != w.From || !ok || !proto.Equal(msg, w.Payload.(proto.Message)) {
				t.Fatalf("signal %d on the other replica: got %s %v, want %s %v", i, got.From, got.Payload, w.From, w.Payload)
			}
			if msg == w.Payload {
				t.Fatalf("signal %d crossed as the same pointer: it did not go through the database", i)
			}
		case <-time.After(time.Second):
			t.Fatalf("signal %d did not reach the other replica within a second", i)
		}
	}
	// The local subscriber got each signal once, as it was published.
	if len(onA) != 4 {
		t.Fatalf("the local subscriber holds %d signals, want the 4 published", len(onA))
	}
	for _, w := range []any{typing, cursor, 42, marker} {
		if got := <-onA; got.Payload != w {
			t.Fatalf("the local subscriber got %v, want %v", got.Payload, w)
		}
	}
}

func TestRelaySplitsBatchesIntoPayloadsPostgreSQLTakes(t *testing.T) {
	rs := cluster(t, RelayOptions{}, "a", "b")
	a, b := rs[0], rs[1]
	keys := make([]string, 5000)
	waits := make([]<-chan struct{}, len(keys))
	for i := range keys {
		keys[i] = ConversationKey(uuid.NewString())
		waits[i] = b.hub.Wait(keys[i])
	}

	// What 5,000 keys encode to: several payloads, each short enough, that
	// carry every key.
	pending := batch{keys: map[string]struct{}{}}
	for _, k := range keys {
		pending.keys[k] = struct{}{}
	}
	payloads := a.relay.encode(pending, time.Now())
	if len(payloads) < 2 {
		t.Fatalf("5,000 keys encoded to %d payload", len(payloads))
	}
	carried := map[string]bool{}
	for _, p := range payloads {
		if len(p) >= 8000 {
			t.Fatalf("a payload of %d bytes: PostgreSQL takes fewer than 8000", len(p))
		}
		var m wireMessage
		if err := json.Unmarshal([]byte(p), &m); err != nil {
			t.Fatalf("a payload does not decode: %v", err)
		}
		for _, k := range m.Keys {
			carried[k] = true
		}
	}
	if len(carried) != len(keys) {
		t.Fatalf("the payloads carry %d keys, want %d", len(carried), len(keys))
	}

	a.hub.Notify(keys...)
	deadline := time.After(10 * time.Second)
	for i, w := range waits {
		select {
		case <-w:
		case <-deadline:
			t.Fatalf("key %d of %d did not arrive", i, len(keys))
		}
	}
}

func TestRelayOverflowWakesEveryWaiter(t *testing.T) {
	// Past MaxPendingKeys the keys give way to one wake-everything hint.
	rs := cluster(t, RelayOptions{MaxPendingKeys: 3}, "a", "b")
	a, b := rs[0], rs[1]
	other := b.hub.Wait("never/notified")
	a.hub.Notify("k1", "k2", "k3", "k4")
	closedWithin(t, other, time.Second, "a waiter of a key nobody notified")
	if b.revocations.Load() == 0 || b.configs.Load() == 0 {
		t.Error("a wake-everything hint did not drop the caches")
	}
}

func TestRelayReconnectsItsListener(t *testing.T) {
	rs := cluster(t, RelayOptions{MinBackoff: 10 * time.Millisecond}, "a", "b")
	a, b := rs[0], rs[1]
	admin := adminConn(t)
	waiting := b.hub.Wait(AgentKey(uuid.NewString()))
	terminate(t, admin, backendOf(t, admin, b.id, "listener"))
	// Hints may have been lost while it was away: every waiter wakes once
	// it listens again.
	closedWithin(t, waiting, 10*time.Second, "a waiter on the replica that lost its listener")
	if b.revocations.Load() == 0 || b.configs.Load() == 0 {
		t.Error("reconnecting did not drop the caches")
	}
	key := ConversationKey(uuid.NewString())
	onB := b.hub.Wait(key)
	a.hub.Notify(key)
	closedWithin(t, onB, time.Second, "a waiter after the reconnection")
}

func TestRelayReconnectsItsNotifier(t *testing.T) {
	rs := cluster(t, RelayOptions{MinBackoff: 10 * time.Millisecond}, "a", "b")
	a, b := rs[0], rs[1]
	admin := adminConn(t)
	terminate(t, admin, backendOf(t, admin, a.id, "notifier"))
	key := ConversationKey(uuid.NewString())
	onB := b.hub.Wait(key)
	a.hub.Notify(key)
	closedWithin(t, onB, 10*time.Second, "a waiter of a key sent after the notifier's connection died")
}

func TestRelaySafetyPollWakesEveryWaiter(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC))
	rs := cluster(t, RelayOptions{Clock: fake, Poll: 5 * time.Second}, "a")
	a := rs[0]
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := fake.WaitArmed(ctx, 1); err != nil {
		t.Fatalf("the safety poll's ticker was not armed: %v", err)
	}
	w1, w2 := a.hub.Wait(ConversationKey("c1")), a.hub.Wait(QueueKey("q1"))
	fake.Advance(4 * time.Second)
	if isClosed(w1) || isClosed(w2) {
		t.Fatal("waiters woken before the poll period")
	}
	fake.Advance(time.Second)
	closedWithin(t, w1, time.Second, "a conversation's waiter at the poll")
	closedWithin(t, w2, time.Second, "a queue's waiter at the poll")
}

func TestRelayCloseDetachesAndStops(t *testing.T) {
	baseline := runtime.NumGoroutine()
	rs := cluster(t, RelayOptions{}, "a", "b")
	a, b := rs[0], rs[1]
	key := ConversationKey(uuid.NewString())
	onB := b.hub.Wait(key)
	a.hub.Notify(key)
	closedWithin(t, onB, time.Second, "the other replica's waiter")

	a.relay.Close()
	a.relay.Close() // a second Close does nothing
	if a.hub.relay.Load() != nil || a.signals.relay.Load() != nil {
		t.Fatal("a closed relay is still attached")
	}
	// The hub goes on locally.
	local := a.hub.Wait(key)
	a.hub.Notify(key)
	if !isClosed(local) {
		t.Fatal("a hub whose relay closed no longer wakes its own waiters")
	}
	// A new relay can take the closed one's place.
	dsn := testDSN(t)
	again, err := NewRelay(t.Context(), dsn, a.hub, a.signals, RelayOptions{Channel: a.relay.opts.Channel, Poll: time.Hour})
	if err != nil {
		t.Fatalf("start a relay after Close: %v", err)
	}
	defer again.Close()
	if _, err := NewRelay(t.Context(), dsn, a.hub, a.signals, RelayOptions{Poll: time.Hour}); err == nil {
		t.Fatal("a second relay attached to a hub that has one")
	}
	b.relay.Close()
	again.Close()
	checkNoRelayGoroutines(t, baseline)
}

// TestRelayStartFails: a relay that cannot listen does not start, and
// leaves nothing behind.
func TestRelayStartFails(t *testing.T) {
	baseline := runtime.NumGoroutine()
	hub, signals := NewHub(), NewSignals()
	_, err := NewRelay(t.Context(), "postgres://127.0.0.1:1/none?sslmode=disable&connect_timeout=1", hub, signals, RelayOptions{})
	if err == nil {
		t.Fatal("a relay started without a database")
	}
	if hub.relay.Load() != nil || signals.relay.Load() != nil {
		t.Fatal("a relay that failed to start is attached")
	}
	if _, err := NewRelay(t.Context(), "postgres://x", hub, signals, RelayOptions{Channel: strings.Repeat("c", 64)}); err == nil ||
		!strings.Contains(err.Error(), "longer than") {
		t.Fatalf("a 64-byte channel: got %v, want a refusal", err)
	}
	checkNoRelayGoroutines(t, baseline)
}

// TestRelayPayloadFormat pins the payloads' format, which anyone may read
// with LISTEN in psql.
func TestRelayPayloadFormat(t *testing.T) {
	r := &Relay{opts: RelayOptions{ReplicaID: "r1"}}
	got := r.encode(batch{keys: map[string]struct{}{RoutingKey: {}}}, time.UnixMicro(1))
	want := `{"r":"r1","t":1,"k":["routing"],"s":[]}`
	if len(got) != 1 || got[0] != want {
		t.Fatalf("got %q, want [%q]", got, want)
	}
}
