package session

import (
	"context"
	"fmt"
	"slices"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/gueststart"
	"github.com/parleyhq/parley/ent/predicate"
	"github.com/parleyhq/parley/server/internal/apierr"
)

// guestSite loads the messenger site a guest names, if any, and checks
// that a browser calls from one of its allowed origins, or from a page
// this server served (the messenger's own iframe page, which is served
// only to host pages the site allows; see WithSameOriginCall).
func guestSite(ctx context.Context, tx *ent.Tx, siteID string) (*ent.Site, error) {
	if siteID == "" {
		return nil, nil
	}
	site, err := tx.Site.Get(ctx, uuid.MustParse(siteID))
	if ent.IsNotFound(err) {
		return nil, apierr.New(connect.CodeInvalidArgument, "UNKNOWN_SITE",
			fmt.Sprintf("site_id %s names no site; ask the site's admin for the messenger's site id", siteID))
	}
	if err != nil {
		return nil, fmt.Errorf("load site %s: %w", siteID, err)
	}
	if origin := requestOrigin(ctx); origin != "" && !sameOriginCall(ctx) && !slices.Contains(site.AllowedOrigins, origin) {
		return nil, apierr.New(connect.CodePermissionDenied, "ORIGIN_NOT_ALLOWED",
			fmt.Sprintf("the messenger of site %s may not be used from %s", site.ID, origin))
	}
	return site, nil
}

// sameOriginKey marks a context as a same-origin browser call's.
type sameOriginKey struct{}

// WithSameOriginCall returns ctx marked as a browser call from a page this
// server served: its Origin header is the server's own origin, as the HTTP
// layer decided from the request itself. Only that layer may set it.
func WithSameOriginCall(ctx context.Context) context.Context {
	return context.WithValue(ctx, sameOriginKey{}, true)
}

// sameOriginCall reports whether WithSameOriginCall marked ctx.
func sameOriginCall(ctx context.Context) bool {
	same, _ := ctx.Value(sameOriginKey{}).(bool)
	return same
}

// requestOrigin is the browser's Origin header, or "" outside browsers.
func requestOrigin(ctx context.Context) string {
	info, ok := connect.CallInfoForServerContext(ctx)
	if !ok {
		return ""
	}
	return info.RequestHeader().Get("Origin")
}

// countGuestStart applies the guest session limits in layers, each over
// the last rolling hour and counted in the store (so every replica sees the
// same counts, and a restart forgets nothing): the installation's total,
// the client address's share of it, and the site's. If none is reached it
// records this start (retry tells a retried StartGuestChat, which counts
// the same). The per-address limit is checked before the total can fill,
// so one abusive address cannot starve other visitors; new request ids or
// cookies do not reset it, because it counts by address. Every refusal
// shows the configured message.
func countGuestStart(ctx context.Context, tx *ent.Tx, set *ent.Setting, site *ent.Site, address string, retry bool, now time.Time) error {
	type limit struct {
		reason string
		max    int
		scope  predicate.GuestStart
	}
	var limits []limit
	if set.MaxGuestSessionsPerHourPerAddress > 0 && address != "" {
		limits = append(limits, limit{"GUEST_SESSION_LIMIT_ADDRESS", set.MaxGuestSessionsPerHourPerAddress, gueststart.ClientAddress(address)})
	}
	if site != nil && site.MaxGuestSessionsPerHour > 0 {
		limits = append(limits, limit{"GUEST_SESSION_LIMIT_SITE", site.MaxGuestSessionsPerHour, gueststart.SiteID(site.ID)})
	}
	limits = append(limits, limit{"GUEST_SESSION_LIMIT", set.MaxGuestSessionsPerHour, nil})
	for _, l := range limits {
		q := tx.GuestStart.Query().Where(gueststart.CreatedAtGT(now.Add(-GuestSessionWindow)))
		if l.scope != nil {
			q.Where(l.scope)
		}
		n, err := q.Count(ctx)
		if err != nil {
			return fmt.Errorf("count recent guest sessions (%s): %w", l.reason, err)
		}
		if n >= l.max {
			return apierr.New(connect.CodeResourceExhausted, l.reason, set.GuestSessionsRateLimitReachedMessage)
		}
	}
	create := tx.GuestStart.Create().SetCreatedAt(now).SetClientAddress(address).SetRetry(retry)
	if site != nil {
		create.SetSiteID(site.ID)
	}
	if err := create.Exec(ctx); err != nil {
		return fmt.Errorf("record guest start: %w", err)
	}
	return nil
}
