package messaging

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxIdleLimiters is how many per-sender limiters are kept before the full
// (idle) ones are dropped; a dropped limiter comes back full, which is
// what it was.
const maxIdleLimiters = 10_000

// senderLimits is a token bucket per sender (golang.org/x/time/rate): a
// burst of writes, then a steady rate. One sender running out never
// affects another.
type senderLimits struct {
	mu       sync.Mutex
	limit    rate.Limit
	burst    int
	limiters map[string]*rate.Limiter
}

func newSenderLimits(perSecond float64, burst int) *senderLimits {
	return &senderLimits{limit: rate.Limit(perSecond), burst: burst, limiters: make(map[string]*rate.Limiter)}
}

// take spends one token of sender's bucket at now. If there is none, it
// returns false and how long until there is.
func (l *senderLimits) take(sender string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.limiters[sender]
	if !ok {
		if len(l.limiters) >= maxIdleLimiters {
			l.dropFull(now)
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.limiters[sender] = lim
	}
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now)
		return false, wait
	}
	return true, 0
}

// dropFull forgets limiters whose bucket has refilled.
func (l *senderLimits) dropFull(now time.Time) {
	for k, lim := range l.limiters {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.limiters, k)
		}
	}
}
