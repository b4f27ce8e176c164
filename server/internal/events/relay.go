package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/parleyhq/parley/server/internal/clock"
)

// DefaultRelayPoll is how often a relay wakes every local waiter, in case
// a hint was lost: the most a lost hint delays anyone.
const DefaultRelayPoll = 5 * time.Second

const (
	defaultChannel           = "parley"
	defaultMinBackoff        = 100 * time.Millisecond
	defaultMaxBackoff        = 10 * time.Second
	defaultMaxPendingKeys    = 100_000
	defaultMaxPendingSignals = 1_000

	// maxPayload is the longest payload PostgreSQL notifies (it must be
	// shorter than 8000 bytes).
	maxPayload = 7999
	// maxName is the longest name PostgreSQL keeps, for a channel (an
	// identifier) as for an application_name.
	maxName = 63
	// dialTimeout bounds one attempt to connect (and LISTEN).
	dialTimeout = 10 * time.Second
)

// RelayOptions tune a Relay; the zero value is ready to use.
type RelayOptions struct {
	// ReplicaID names this replica in what it sends, so that it skips its
	// own notifications, and in pg_stat_activity's application_name.
	// Every replica needs its own; the default is a random one. At most 63
	// bytes.
	ReplicaID string
	// Channel is the NOTIFY channel the replicas of one installation share
	// (default "parley"; at most 63 bytes).
	Channel string
	// Poll is how often every local waiter is woken in case a hint was
	// lost (default DefaultRelayPoll). The caches are left to their own
	// TTLs: the poll does not call OnRevocation or OnConfigChange.
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait before reconnecting, which
	// doubles with each failure in a row (defaults 100ms and 10s).
	MinBackoff, MaxBackoff time.Duration
	// MaxPendingKeys bounds the distinct keys waiting to be sent; past it
	// they are replaced by one hint that wakes every waiter on the other
	// replicas (default 100,000).
	MaxPendingKeys int
	// MaxPendingSignals bounds the signals waiting to be sent; past it new
	// ones are dropped, as they are ephemeral (default 1,000).
	MaxPendingSignals int
	// OnRevocation, if set, is called when another replica may have
	// revoked a token (a TokenKey arrived, or hints may have been lost),
	// before the token's waiters are woken. app passes
	// auth.NoteRemoteRevocation.
	OnRevocation func()
	// OnConfigChange, if set, is called when another replica may have
	// changed the sites or settings (ConfigKey arrived, or hints may have
	// been lost), before ConfigKey's waiters are woken. app passes
	// the origins cache's Invalidate.
	OnConfigChange func()
	// SendLag, if set, observes each NOTIFY sent: how long the oldest
	// hint or signal in it waited since Notify or Publish.
	SendLag func(time.Duration)
	// ReceiveLag, if set, observes each notification received from
	// another replica: the time from its sending to its receipt, by the
	// two replicas' clocks.
	ReceiveLag func(time.Duration)
	// Clock times the safety poll, the backoff and the lags (default
	// clock.Real).
	Clock clock.Clock
	// Log receives connection losses and undecodable payloads (default
	// slog.Default()).
	Log *slog.Logger
}

func (o RelayOptions) withDefaults() (RelayOptions, error) {
	if o.ReplicaID == "" {
		o.ReplicaID = uuid.NewString()
	}
	if len(o.ReplicaID) > maxName {
		return o, fmt.Errorf("relay replica id %q is longer than %d bytes", o.ReplicaID, maxName)
	}
	if o.Channel == "" {
		o.Channel = defaultChannel
	}
	if len(o.Channel) > maxName {
		return o, fmt.Errorf("relay channel %q is longer than %d bytes", o.Channel, maxName)
	}
	if o.Poll <= 0 {
		o.Poll = DefaultRelayPoll
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = defaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(defaultMaxBackoff, o.MinBackoff)
	}
	if o.MaxPendingKeys <= 0 {
		o.MaxPendingKeys = defaultMaxPendingKeys
	}
	if o.MaxPendingSignals <= 0 {
		o.MaxPendingSignals = defaultMaxPendingSignals
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return o, nil
}

// transport is the database side of a relay; relay_pgx.go implements it
// with PostgreSQL's LISTEN/NOTIFY.
type transport interface {
	// listen opens a connection that listens on the channel.
	listen(ctx context.Context) (listener, error)
	// notifier opens a connection that notifies on the channel.
	notifier(ctx context.Context) (notifier, error)
}

// listener is a connection listening on the channel.
type listener interface {
	// next returns the payload of the next notification.
	next(ctx context.Context) (string, error)
	close()
}

// notifier is a connection notifying on the channel.
type notifier interface {
	// send notifies each payload, outside any transaction of the store.
	send(ctx context.Context, payloads []string) error
	close()
}

// Relay carries a Hub's keys and a Signals' signals to the other replicas
// sharing a PostgreSQL database, and theirs to this replica's waiters and
// subscribers. It is one replica's notifier: Notify and Publish hand it
// their keys and signals without blocking; it sends what accumulated, in
// batches, on a connection of its own, after the writes have committed.
// Another connection listens. Hints are only hints: when some may have
// been lost (the listening connection dropped), and every Poll anyway,
// the relay wakes every local waiter, and they re-read the store.
type Relay struct {
	hub     *Hub
	signals *Signals
	tr      transport
	opts    RelayOptions
	clk     clock.Clock
	log     *slog.Logger

	mu      sync.Mutex
	pending batch
	kick    chan struct{} // has a value when pending may hold something

	stop      context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// batch is what waits to be sent.
type batch struct {
	keys map[string]struct{}
	// all replaces keys when there were too many: wake every waiter.
	all     bool
	signals []keyedSignal
	// since is when the oldest of them was handed over.
	since time.Time
}

type keyedSignal struct {
	key string
	sig Signal
}

func (b *batch) empty() bool { return len(b.keys) == 0 && !b.all && len(b.signals) == 0 }

// newRelay starts a relay over tr for hub and signals; opts has its
// defaults. It listens before it returns, so nothing notified after it
// returned is missed.
func newRelay(ctx context.Context, tr transport, hub *Hub, signals *Signals, opts RelayOptions) (*Relay, error) {
	r := &Relay{
		hub: hub, signals: signals, tr: tr, opts: opts, clk: opts.Clock,
		log:  opts.Log.With("channel", opts.Channel, "replica", opts.ReplicaID),
		kick: make(chan struct{}, 1),
	}
	dialCtx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	l, err := tr.listen(dialCtx)
	if err != nil {
		return nil, fmt.Errorf("start relay: %w", err)
	}
	n, err := tr.notifier(dialCtx)
	if err != nil {
		l.close()
		return nil, fmt.Errorf("start relay: %w", err)
	}
	if !hub.relay.CompareAndSwap(nil, r) {
		l.close()
		n.close()
		return nil, errors.New("start relay: the hub already has a relay")
	}
	if !signals.relay.CompareAndSwap(nil, r) {
		hub.relay.Store(nil)
		l.close()
		n.close()
		return nil, errors.New("start relay: the signals already have a relay")
	}
	run, stop := context.WithCancel(context.Background())
	r.stop = stop
	r.wg.Go(func() { r.listening(run, l) })
	r.wg.Go(func() { r.sending(run, n) })
	r.wg.Go(func() { r.polling(run) })
	return r, nil
}

// Close detaches the relay from its hub and signals (they go on locally),
// stops it and closes its connections. What was not sent yet is dropped:
// the other replicas' safety poll covers it.
func (r *Relay) Close() {
	r.closeOnce.Do(func() {
		r.hub.relay.CompareAndSwap(r, nil)
		r.signals.relay.CompareAndSwap(r, nil)
		r.stop()
		r.wg.Wait()
	})
}

// addKeys queues keys to be sent; a key already queued is not queued
// twice, as a wake-up is idempotent.
func (r *Relay) addKeys(keys []string) {
	if len(keys) == 0 {
		return
	}
	r.mu.Lock()
	r.markPending()
	if !r.pending.all {
		if r.pending.keys == nil {
			r.pending.keys = make(map[string]struct{}, len(keys))
		}
		for _, k := range keys {
			r.pending.keys[k] = struct{}{}
		}
		if len(r.pending.keys) > r.opts.MaxPendingKeys {
			r.pending.keys, r.pending.all = nil, true
		}
	}
	r.mu.Unlock()
	r.wake()
}

// addSignal queues sig to be sent, unless too many are queued or its
// payload is no proto.Message.
func (r *Relay) addSignal(key string, sig Signal) {
	if _, ok := sig.Payload.(proto.Message); !ok {
		return
	}
	r.mu.Lock()
	if len(r.pending.signals) >= r.opts.MaxPendingSignals {
		r.mu.Unlock()
		return
	}
	r.markPending()
	r.pending.signals = append(r.pending.signals, keyedSignal{key, sig})
	r.mu.Unlock()
	r.wake()
}

// markPending notes when pending stopped being empty; r.mu is held.
func (r *Relay) markPending() {
	if r.pending.empty() {
		r.pending.since = r.clk.Now()
	}
}

// wake tells the sender that something is pending.
func (r *Relay) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// take returns what is pending and empties it.
func (r *Relay) take() batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.pending
	r.pending = batch{}
	return b
}

// putBack queues again the keys of b, which could not be sent; its
// signals are dropped.
func (r *Relay) putBack(b batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending.empty() || b.since.Before(r.pending.since) {
		r.pending.since = b.since
	}
	switch {
	case b.all || r.pending.all:
		r.pending.keys, r.pending.all = nil, true
	case r.pending.keys == nil:
		r.pending.keys = b.keys
	default:
		for k := range b.keys {
			r.pending.keys[k] = struct{}{}
		}
		if len(r.pending.keys) > r.opts.MaxPendingKeys {
			r.pending.keys, r.pending.all = nil, true
		}
	}
}

// sending sends what is pending whenever there is some, until ctx ends:
// whatever accumulates while a NOTIFY is in flight goes in the next. When
// the connection fails it reconnects, and keys pile up, coalesced, in the
// meantime.
func (r *Relay) sending(ctx context.Context, n notifier) {
	defer func() {
		if n != nil {
			n.close()
		}
	}()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
		b := r.take()
		if b.empty() {
			continue
		}
		err := n.send(ctx, r.encode(b, r.clk.Now()))
		if err == nil {
			failures = 0
			if r.opts.SendLag != nil {
				r.opts.SendLag(r.clk.Now().Sub(b.since))
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("relay: could not notify the other replicas; reconnecting", "err", err)
		r.putBack(b)
		n.close()
		n = nil
		if !r.reconnect(ctx, "notifier", &failures, func(ctx context.Context) (err error) {
			n, err = r.tr.notifier(ctx)
			return err
		}) {
			return
		}
		r.wake()
	}
}

// listening hands what arrives to the local waiters and subscribers until
// ctx ends. When the connection fails it reconnects, listens again and then
// wakes every local waiter, since hints may have been lost meanwhile.
func (r *Relay) listening(ctx context.Context, l listener) {
	defer func() {
		if l != nil {
			l.close()
		}
	}()
	failures := 0
	for {
		payload, err := l.next(ctx)
		if err == nil {
			failures = 0
			r.receive(payload)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("relay: lost the listening connection; reconnecting", "err", err)
		l.close()
		l = nil
		if !r.reconnect(ctx, "listener", &failures, func(ctx context.Context) (err error) {
			l, err = r.tr.listen(ctx)
			return err
		}) {
			return
		}
		r.log.Info("relay: listening again; waking every waiter")
		r.wakeAll()
	}
}

// polling wakes every local waiter every Poll until ctx ends, so that a
// lost hint costs at most one period.
func (r *Relay) polling(ctx context.Context) {
	t := r.clk.NewTicker(r.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			r.hub.wakeAll()
		}
	}
}

// wakeAll drops the caches hints keep fresh and wakes every local waiter:
// the hints they were waiting for may have been lost.
func (r *Relay) wakeAll() {
	if r.opts.OnRevocation != nil {
		r.opts.OnRevocation()
	}
	if r.opts.OnConfigChange != nil {
		r.opts.OnConfigChange()
	}
	r.hub.wakeAll()
}

// reconnect waits, then calls dial until it succeeds, waiting longer after
// each failure; failures counts the failures in a row, the one that calls
// reconnect included, so that a connection that fails as soon as it is
// made is not made again and again without a pause. It reports false if
// ctx ended first.
func (r *Relay) reconnect(ctx context.Context, what string, failures *int, dial func(context.Context) error) bool {
	for {
		*failures++
		wait := r.opts.MinBackoff
		for i := 1; i < *failures && wait < r.opts.MaxBackoff; i++ {
			wait *= 2
		}
		wait = min(wait, r.opts.MaxBackoff)
		wait = wait/2 + rand.N(wait/2+1)
		t := r.clk.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C():
		}
		dialCtx, cancel := context.WithTimeout(ctx, dialTimeout)
		err := dial(dialCtx)
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		r.log.Warn("relay: could not reconnect; retrying", "conn", what, "err", err, "failures", *failures)
	}
}

// wireMessage is one notification's payload, in JSON.
type wireMessage struct {
	// Replica is the sender's ReplicaID.
	Replica string `json:"r"`
	// Sent is when it was sent, in Unix microseconds.
	Sent int64 `json:"t"`
	// All asks to wake every waiter: keys were coalesced away.
	All     bool         `json:"a,omitempty"`
	Keys    []string     `json:"k"`
	Signals []wireSignal `json:"s"`
}

// wireSignal is a Signal whose payload is a proto message.
type wireSignal struct {
	Key  string `json:"k"`
	From string `json:"f"`
	// Type is the payload's full message name, Value its wire bytes.
	Type  string `json:"y"`
	Value []byte `json:"v"`
}

// encode renders b as payloads shorter than maxPayload, each of them a
// wireMessage. A key or signal too long for a payload on its own is
// dropped (the safety poll covers a lost key).
func (r *Relay) encode(b batch, sent time.Time) []string {
	var head []byte
	head = append(head, `{"r":`...)
	head = appendJSON(head, r.opts.ReplicaID)
	head = append(head, `,"t":`...)
	head = strconv.AppendInt(head, sent.UnixMicro(), 10)
	if b.all {
		head = append(head, `,"a":true`...)
	}
	const tail = len(`,"k":[],"s":[]}`)
	room := maxPayload - len(head) - tail

	type part struct {
		keys, signals []byte
	}
	parts := []part{{}}
	add := func(item []byte, signal bool) {
		if len(item)+1 > room {
			r.log.Warn("relay: dropping a hint too long for a notification", "bytes", len(item))
			return
		}
		p := &parts[len(parts)-1]
		if len(p.keys)+len(p.signals)+len(item)+1 > room {
			parts = append(parts, part{})
			p = &parts[len(parts)-1]
		}
		list := &p.keys
		if signal {
			list = &p.signals
		}
		if len(*list) > 0 {
			*list = append(*list, ',')
		}
		*list = append(*list, item...)
	}
	for k := range b.keys {
		add(appendJSON(nil, k), false)
	}
	for _, s := range b.signals {
		msg := s.sig.Payload.(proto.Message) // addSignal let only these in
		value, err := proto.Marshal(msg)
		if err != nil {
			r.log.Warn("relay: dropping a signal that does not encode", "key", s.key, "err", err)
			continue
		}
		add(appendJSON(nil, wireSignal{
			Key: s.key, From: s.sig.From, Type: string(msg.ProtoReflect().Descriptor().FullName()), Value: value,
		}), true)
	}
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		payload := make([]byte, 0, len(head)+len(p.keys)+len(p.signals)+tail)
		payload = append(payload, head...)
		payload = append(payload, `,"k":[`...)
		payload = append(payload, p.keys...)
		payload = append(payload, `],"s":[`...)
		payload = append(payload, p.signals...)
		payload = append(payload, `]}`...)
		out = append(out, string(payload))
	}
	return out
}

// appendJSON appends v's JSON to buf; v is a string or a wireSignal, which
// always encode.
func appendJSON(buf []byte, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("relay: encode %T: %v", v, err))
	}
	return append(buf, b...)
}

// receive hands a payload from another replica to the local waiters and
// subscribers, without sending anything on.
func (r *Relay) receive(payload string) {
	var m wireMessage
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		r.log.Warn("relay: ignoring a notification that does not decode", "err", err)
		return
	}
	if m.Replica == r.opts.ReplicaID {
		return
	}
	if r.opts.ReceiveLag != nil {
		r.opts.ReceiveLag(r.clk.Now().Sub(time.UnixMicro(m.Sent)))
	}
	if m.All {
		r.wakeAll()
	} else {
		var revoked, config bool
		for _, k := range m.Keys {
			revoked = revoked || strings.HasPrefix(k, tokenKeyPrefix)
			config = config || k == ConfigKey
		}
		if revoked && r.opts.OnRevocation != nil {
			r.opts.OnRevocation()
		}
		if config && r.opts.OnConfigChange != nil {
			r.opts.OnConfigChange()
		}
		r.hub.wake(m.Keys)
	}
	for _, s := range m.Signals {
		msg, err := decodeSignal(s)
		if err != nil {
			r.log.Warn("relay: ignoring a signal that does not decode", "key", s.Key, "err", err)
			continue
		}
		r.signals.publish(s.Key, Signal{From: s.From, Payload: msg})
	}
}

// decodeSignal returns s's payload as a message of its type.
func decodeSignal(s wireSignal) (proto.Message, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(s.Type))
	if err != nil {
		return nil, fmt.Errorf("find message type %q: %w", s.Type, err)
	}
	msg := mt.New().Interface()
	if err := proto.Unmarshal(s.Value, msg); err != nil {
		return nil, fmt.Errorf("unmarshal %s: %w", s.Type, err)
	}
	return msg, nil
}
