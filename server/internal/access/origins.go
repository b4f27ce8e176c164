package access

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/store"
)

// originsTTL bounds how long a site change made on another replica takes
// to reach this one's CORS answers.
const originsTTL = 10 * time.Second

// Origins answers whether a browser origin may call Parley: one of the
// operator's static origins (the portal, the agent workspace) or one of a
// registered site's. Sites are read from the store at most every
// originsTTL, and at once after a change on this replica.
type Origins struct {
	db     *store.DB
	clk    clock.Clock
	log    *slog.Logger
	static []string

	mu       sync.Mutex
	sites    map[string]bool
	loadedAt time.Time
}

// NewOrigins returns the origin allowlist of static plus db's sites.
func NewOrigins(db *store.DB, clk clock.Clock, log *slog.Logger, static []string) *Origins {
	return &Origins{db: db, clk: clk, log: log, static: static}
}

// Allowed reports whether origin may make cross-origin calls. If the sites
// cannot be read, the last list read is kept (none at first), so a store
// hiccup never opens CORS wider.
func (o *Origins) Allowed(ctx context.Context, origin string) bool {
	if slices.Contains(o.static, origin) {
		return true
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sites == nil || o.clk.Now().Sub(o.loadedAt) >= originsTTL {
		if sites, err := o.load(ctx); err != nil {
			o.log.Error("could not read sites for CORS; keeping the last list", "err", err)
		} else {
			o.sites, o.loadedAt = sites, o.clk.Now()
		}
	}
	return o.sites[origin]
}

// Invalidate makes the next Allowed re-read the sites.
func (o *Origins) Invalidate() {
	o.mu.Lock()
	o.sites = nil
	o.mu.Unlock()
}

func (o *Origins) load(ctx context.Context) (map[string]bool, error) {
	rows, err := o.db.Site.Query().All(ctx)
	if err != nil {
		return nil, fmt.Errorf("load sites: %w", err)
	}
	out := map[string]bool{}
	for _, s := range rows {
		for _, origin := range s.AllowedOrigins {
			out[origin] = true
		}
	}
	return out, nil
}
