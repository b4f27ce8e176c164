package auth

import (
	"context"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleyhq/parley/server/internal/store"
)

// CacheTTL bounds how long a resolved principal is reused. A revocation
// made by this process drops every cached principal as it commits; one
// made by another replica does when its notice arrives through the events
// relay (NoteRemoteRevocation), and within CacheTTL at worst (open streams
// re-read their token on every wake regardless).
const CacheTTL = 2 * time.Second

// maxCached bounds the cache; when it is full it starts over.
const maxCached = 100_000

// revocations counts the revocations this process has committed or heard
// of. A cached
// principal is used only while the count is what it was before the
// principal was read from the store, so a read that raced a revocation is
// never kept.
var revocations atomic.Uint64

// NoteRevocation marks the write transaction whose ctx this is as one that
// revokes tokens: once it commits, no principal cached before is used.
func NoteRevocation(ctx context.Context) {
	store.AfterCommit(ctx, func() { revocations.Add(1) })
}

// NoteRemoteRevocation tells that another replica revoked a token (or may
// have: its notice may have been lost), which has committed: from now on,
// no principal cached before is used. The events relay calls it.
func NoteRemoteRevocation() {
	revocations.Add(1)
}

// principals caches resolved principals by the hash of the credential,
// so a caller's token is looked up (or its JWT verified and its consumer
// record found) once, not on every call.
type principals struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte]cachedPrincipal
}

type cachedPrincipal struct {
	p     Principal
	epoch uint64
	until time.Time
}

func newPrincipals() *principals {
	return &principals{entries: make(map[[sha256.Size]byte]cachedPrincipal)}
}

// resolve returns the principal of secret from the cache, or from load,
// which it then caches.
func (c *principals) resolve(secret string, now time.Time, load func() (*Principal, error)) (*Principal, error) {
	key := sha256.Sum256([]byte(secret))
	epoch := revocations.Load()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && e.epoch == epoch && now.Before(e.until) && (e.p.Expires.IsZero() || now.Before(e.p.Expires)) {
		p := e.p
		return &p, nil
	}
	p, err := load()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.entries) >= maxCached {
		clear(c.entries)
	}
	c.entries[key] = cachedPrincipal{p: *p, epoch: epoch, until: now.Add(CacheTTL)}
	c.mu.Unlock()
	return p, nil
}
