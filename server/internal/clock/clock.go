// Package clock abstracts the time source, timers and tickers, so limits,
// offer timeouts, windows, heartbeats and stream lifetimes can be tested
// with a fake clock that moves only when a test advances it.
package clock

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Clock tells the current time and makes timers and tickers that follow it.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that sends the time on its channel once d
	// has passed.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a ticker that sends the time on its channel every
	// d, dropping ticks for a slow receiver.
	NewTicker(d time.Duration) Ticker
	// AfterFunc calls f once d has passed; the returned timer's C is nil.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a single event, as time.Timer. Stop and Reset guarantee that
// no stale value is received afterwards.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it was armed.
	Stop() bool
	// Reset arms the timer again to fire after d; it reports whether it
	// was armed.
	Reset(d time.Duration) bool
}

// Ticker delivers ticks at intervals, as time.Ticker.
type Ticker interface {
	C() <-chan time.Time
	Stop()
	// Reset stops the ticker and restarts it with period d.
	Reset(d time.Duration)
}

// Real is the system clock.
type Real struct{}

// Now returns the current system time.
func (Real) Now() time.Time { return time.Now() }

// NewTimer returns a time.Timer.
func (Real) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

// NewTicker returns a time.Ticker.
func (Real) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

// AfterFunc returns time.AfterFunc's timer.
func (Real) AfterFunc(d time.Duration, f func()) Timer { return realTimer{time.AfterFunc(d, f)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time   { return r.t.C }
func (r realTicker) Stop()                 { r.t.Stop() }
func (r realTicker) Reset(d time.Duration) { r.t.Reset(d) }

// Fake is a manually advanced clock for tests: its timers, tickers and
// AfterFuncs fire only when Advance moves the time past them. Its zero
// value is not usable; create one with NewFake.
//
// A test that advances the clock to fire a timer must first know that the
// code under test armed it: Parley's streams arm theirs before they send
// their response headers, and WaitArmed waits until a number of timers
// are armed.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	armed  map[*fakeTimer]bool
	change chan struct{} // closed and replaced whenever a timer is armed
}

// NewFake returns a fake clock set to t.
func NewFake(t time.Time) *Fake {
	return &Fake{now: t, armed: map[*fakeTimer]bool{}, change: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the fake time forward by d and fires every timer, ticker
// and AfterFunc that falls due, in the order of their times. A timer or
// ticker sends on its channel before Advance returns (a ticker whose last
// tick was not received drops the new one, as time.Ticker does); an
// AfterFunc's function runs in Advance's goroutine, before it returns.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	now := f.now
	var due []*fakeTimer
	for t := range f.armed {
		if !t.at.After(now) {
			due = append(due, t)
		}
	}
	slices.SortFunc(due, func(a, b *fakeTimer) int { return a.at.Compare(b.at) })
	var funcs []func()
	for _, t := range due {
		switch {
		case t.fn != nil:
			delete(f.armed, t)
			funcs = append(funcs, t.fn)
		case t.period > 0:
			t.send(t.at)
			for !t.at.After(now) {
				t.at = t.at.Add(t.period)
			}
		default:
			delete(f.armed, t)
			t.send(t.at)
		}
	}
	f.mu.Unlock()
	for _, fn := range funcs {
		fn()
	}
}

// Armed reports how many timers, tickers and AfterFuncs are armed.
func (f *Fake) Armed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.armed)
}

// WaitArmed waits until at least n timers, tickers and AfterFuncs are
// armed, so that a test advances the clock only once the code under test
// is waiting on it. It fails if ctx ends first.
func (f *Fake) WaitArmed(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		armed, change := len(f.armed), f.change
		f.mu.Unlock()
		if armed >= n {
			return nil
		}
		select {
		case <-change:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// NewTimer returns a timer that fires when the fake time reaches now+d.
func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	f.arm(t, d)
	return t
}

// NewTicker returns a ticker that fires each time the fake time passes
// another period d.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	t := &fakeTimer{f: f, c: make(chan time.Time, 1), period: d}
	f.arm(t, d)
	return fakeTicker{t}
}

// AfterFunc calls fn when the fake time reaches now+d.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	t := &fakeTimer{f: f, fn: fn}
	f.arm(t, d)
	return t
}

// arm schedules t at now+d; a timer due already fires at the next Advance
// (even of zero).
func (f *Fake) arm(t *fakeTimer, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t.at = f.now.Add(d)
	f.armed[t] = true
	close(f.change)
	f.change = make(chan struct{})
}

// disarm unschedules t and drops a value it sent that was not received;
// it reports whether t was armed.
func (f *Fake) disarm(t *fakeTimer) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	was := f.armed[t]
	delete(f.armed, t)
	if t.c != nil {
		select {
		case <-t.c:
		default:
		}
	}
	return was
}

// fakeTimer is a Fake's timer (period zero, fn nil), ticker's schedule
// (period set) or AfterFunc (fn set).
type fakeTimer struct {
	f      *Fake
	c      chan time.Time
	fn     func()
	period time.Duration
	at     time.Time
}

// send delivers at unless an earlier value is still unreceived.
func (t *fakeTimer) send(at time.Time) {
	select {
	case t.c <- at:
	default:
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool { return t.f.disarm(t) }

func (t *fakeTimer) Reset(d time.Duration) bool {
	was := t.f.disarm(t)
	t.f.arm(t, d)
	return was
}

// fakeTicker is a Fake's ticker.
type fakeTicker struct{ t *fakeTimer }

func (k fakeTicker) C() <-chan time.Time { return k.t.c }

func (k fakeTicker) Stop() { k.t.f.disarm(k.t) }

func (k fakeTicker) Reset(d time.Duration) {
	if d <= 0 {
		panic("clock: non-positive interval for Ticker.Reset")
	}
	k.t.f.disarm(k.t)
	k.t.f.mu.Lock()
	k.t.period = d
	k.t.f.mu.Unlock()
	k.t.f.arm(k.t, d)
}
