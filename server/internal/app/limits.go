package app

import (
	"context"
	"log/slog"
	"strings"

	"connectrpc.com/connect/v2"

	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/ratelimit"
	"github.com/parleyhq/parley/server/internal/store"
)

// WriteClass groups the writes that share a rate limit.
type WriteClass string

// The write classes. Every procedure that is not a read (not
// NO_SIDE_EFFECTS) is in one, or handles its limit itself; a test fails
// for a write that is in none.
const (
	// ClassSignals: typing indicators.
	ClassSignals WriteClass = "signals"
	// ClassReceipts: delivered and read marks.
	ClassReceipts WriteClass = "receipts"
	// ClassActions: every other write a participant or staff member makes
	// (closing, leaving a message, presence, offers, transfers, cases).
	ClassActions WriteClass = "actions"
	// ClassWatch: opening an agent's work stream, which leases the agent
	// in the store and starts a routing pass.
	ClassWatch WriteClass = "watch"
)

// Default write limits per caller: a burst, then a steady rate.
var DefaultWriteLimits = map[WriteClass]ratelimit.Rate{
	ClassSignals:  {PerSecond: 2, Burst: 10},
	ClassReceipts: {PerSecond: 5, Burst: 30},
	ClassActions:  {PerSecond: 1, Burst: 20},
	ClassWatch:    {PerSecond: 0.5, Burst: 10},
}

// writeClasses maps the writes the interceptor limits to their class.
var writeClasses = map[string]WriteClass{
	parleyv1connect.MessagingServiceSetTypingProcedure:     ClassSignals,
	parleyv1connect.MessagingServiceMarkDeliveredProcedure: ClassReceipts,
	parleyv1connect.MessagingServiceMarkReadProcedure:      ClassReceipts,

	parleyv1connect.SessionServiceStartCustomerChatProcedure:      ClassActions,
	parleyv1connect.SessionServiceClaimGuestConversationProcedure: ClassActions,
	parleyv1connect.SessionServiceCloseConversationProcedure:      ClassActions,
	parleyv1connect.SessionServiceLeaveMessageProcedure:           ClassActions,

	parleyv1connect.RoutingServiceSetPresenceProcedure:          ClassActions,
	parleyv1connect.RoutingServiceAcceptOfferProcedure:          ClassActions,
	parleyv1connect.RoutingServiceDeclineOfferProcedure:         ClassActions,
	parleyv1connect.RoutingServiceTransferConversationProcedure: ClassActions,
	parleyv1connect.AssistantServiceHandBackToBotProcedure:      ClassActions,
	parleyv1connect.CaseServiceUpdateCaseProcedure:              ClassActions,
	// WatchWork and FollowWork read, but opening them writes the agent's
	// lease.
	parleyv1connect.RoutingServiceWatchWorkProcedure:  ClassWatch,
	parleyv1connect.RoutingServiceFollowWorkProcedure: ClassWatch,

	parleyv1connect.CaseServiceCreateCaseForGuestProcedure:            ClassActions,
	parleyv1connect.CaseServiceCreateConsumerAndCaseForGuestProcedure: ClassActions,
}

// selfLimited writes enforce their limits in their handlers: sends and
// uploads (per participant, where a retry of an accepted write is not a new
// write) and StartGuestChat (the guest session limits, counted in the store).
var selfLimited = map[string]bool{
	parleyv1connect.MessagingServiceSendMessageProcedure:      true,
	parleyv1connect.MessagingServiceUploadAttachmentProcedure: true,
	parleyv1connect.SessionServiceStartGuestChatProcedure:     true,
}

// writeLimits takes one write from the caller's bucket of the procedure's
// class before the request is read. Admins are not limited: they configure
// the installation and are trusted with it.
func writeLimits(db *store.DB, clk clock.Clock, log *slog.Logger, rates map[WriteClass]ratelimit.Rate) connect.ServerInterceptor {
	limiters := map[WriteClass]ratelimit.Buckets{}
	for class, r := range rates {
		limiters[class] = ratelimit.For(db, string(class), r, log)
	}
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			class, limited := writeClasses[spec.Procedure]
			p := auth.FromContext(ctx)
			if !limited || p == nil || p.Role == auth.RoleAdmin {
				return next(ctx, spec, stream)
			}
			if ok, wait := limiters[class].Take(ctx, p.Caller(), clk.Now()); !ok {
				method := spec.Procedure[strings.LastIndexByte(spec.Procedure, '/')+1:]
				return ratelimit.Refusal("RATE_LIMITED", "you are calling "+method, wait)
			}
			return next(ctx, spec, stream)
		}
	}
}
