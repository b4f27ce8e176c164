package session_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/servertest"
)

var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

const limitMessage = "Our team is busy right now. Please try again later."

func guestForm(name string) *parleyv1.StartGuestChatRequest {
	return &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(),
		Name:      name,
		Email:     "guest@example.com",
		IssueType: "order",
		Channel:   parleyv1.Channel_CHANNEL_WEB_PORTAL,
	}
}

func countInteractions(t *testing.T, srv *servertest.Server) int {
	t.Helper()
	n, err := srv.DB.Interaction.Query().Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGuestSessionLimit(t *testing.T) {
	srv := servertest.Start(t,
		servertest.WithFakeClock(t0),
		servertest.WithBootstrap(func(f *bootstrap.File) {
			f.Settings.MaxGuestSessionsPerHour = 3
			f.Settings.GuestSessionsRateLimitReachedMessage = limitMessage
		}),
	)
	ctx := context.Background()
	anon := srv.Client(parley.Connect, "")

	// Three sessions at t0, t0+10m and t0+20m fit the hour.
	first := guestForm("first")
	for i, req := range []*parleyv1.StartGuestChatRequest{first, guestForm("second"), guestForm("third")} {
		if _, err := anon.Session.StartGuestChat(ctx, req); err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
		srv.Clock.Advance(10 * time.Minute)
	}
	// Up to a moment before t0+1h, the first still counts.
	_, err := anon.Session.StartGuestChat(ctx, guestForm("fourth"))
	wantLimit(t, err, limitMessage)
	srv.Clock.Advance(30*time.Minute - time.Millisecond)
	_, err = anon.Session.StartGuestChat(ctx, guestForm("fourth"))
	wantLimit(t, err, limitMessage)
	if n := countInteractions(t, srv); n != 3 {
		t.Fatalf("%d interactions stored, want 3: the refused one must leave nothing", n)
	}

	// A retry of the first start, long after it, no longer gets its token
	// (TestGuestStartRetry covers retries within the window).
	_, err = anon.Session.StartGuestChat(ctx, first)
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || apierr.Reason(err) != "RETRY_WINDOW_PASSED" {
		t.Fatalf("retry an hour later: %v, want FailedPrecondition RETRY_WINDOW_PASSED", err)
	}

	// The window rolls: once the first session is an hour old, one more
	// fits, and the next is refused again.
	srv.Clock.Advance(time.Millisecond)
	if _, err := anon.Session.StartGuestChat(ctx, guestForm("fifth")); err != nil {
		t.Fatalf("after the window rolled: %v", err)
	}
	_, err = anon.Session.StartGuestChat(ctx, guestForm("sixth"))
	wantLimit(t, err, limitMessage)

	// An admin changes the limit and the message at run time.
	admin := srv.Client(parley.Connect, servertest.AdminToken)
	set, err := admin.Session.GetSettings(ctx, &parleyv1.GetSettingsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	set.GetSettings().MaxGuestSessionsPerHour = 4
	set.GetSettings().GuestSessionsRateLimitReachedMessage = "Closed for the day."
	if _, err := admin.Session.UpdateSettings(ctx, &parleyv1.UpdateSettingsRequest{Settings: set.GetSettings()}); err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Session.StartGuestChat(ctx, guestForm("seventh")); err != nil {
		t.Fatalf("after raising the limit: %v", err)
	}
	_, err = anon.Session.StartGuestChat(ctx, guestForm("eighth"))
	wantLimit(t, err, "Closed for the day.")
}

func wantLimit(t *testing.T, err error, message string) {
	t.Helper()
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeResourceExhausted || cerr.Message() != message {
		t.Fatalf("got %v, want ResourceExhausted with %q", err, message)
	}
	if r := apierr.Reason(err); r != "GUEST_SESSION_LIMIT" {
		t.Fatalf("reason %q", r)
	}
}

func TestStartGuestChatRejectsBadInput(t *testing.T) {
	srv := servertest.Start(t)
	ctx := context.Background()
	anon := srv.Client(parley.Connect, "")
	tests := []struct {
		name    string
		edit    func(*parleyv1.StartGuestChatRequest)
		code    connect.Code
		message string
	}{
		{"empty name", func(r *parleyv1.StartGuestChatRequest) { r.Name = "" }, connect.CodeInvalidArgument, "name: must be at least 1 characters"},
		{"blank name", func(r *parleyv1.StartGuestChatRequest) { r.Name = "  \t" }, connect.CodeInvalidArgument, "name must not be blank"},
		{"malformed email", func(r *parleyv1.StartGuestChatRequest) { r.Email = "ada.example.com" }, connect.CodeInvalidArgument, "email: must be a valid email address"},
		{"unknown issue type", func(r *parleyv1.StartGuestChatRequest) { r.IssueType = "refunds" }, connect.CodeInvalidArgument, `issue_type "refunds" is not one of: billing, order, product`},
		{"over-long first message", func(r *parleyv1.StartGuestChatRequest) { r.FirstMessage = strings.Repeat("x", 4001) }, connect.CodeInvalidArgument, "first_message: must be at most 4000 characters"},
		{"undefined channel", func(r *parleyv1.StartGuestChatRequest) { r.Channel = 42 }, connect.CodeInvalidArgument, "channel: value must be one of the defined enum values"},
		{"malformed request id", func(r *parleyv1.StartGuestChatRequest) { r.RequestId = "42" }, connect.CodeInvalidArgument, "request_id: must be a valid UUID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := guestForm("Ada")
			tt.edit(req)
			_, err := anon.Session.StartGuestChat(ctx, req)
			if connect.CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("got %v, want %v containing %q", err, tt.code, tt.message)
			}
		})
	}
	if n := countInteractions(t, srv); n != 0 {
		t.Fatalf("%d interactions stored by rejected requests", n)
	}
	if n, err := srv.DB.Conversation.Query().Count(ctx); err != nil || n != 0 {
		t.Fatalf("%d conversations stored by rejected requests (%v)", n, err)
	}

	// A reused request id with a different form is refused; the same form
	// is a retry.
	req := guestForm("Ada")
	if _, err := anon.Session.StartGuestChat(ctx, req); err != nil {
		t.Fatal(err)
	}
	req.Name = "Grace"
	_, err := anon.Session.StartGuestChat(ctx, req)
	if connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Fatalf("reused request id: %v", err)
	}
}

func TestUnknownConversation(t *testing.T) {
	srv := servertest.Start(t)
	ctx := context.Background()
	unknown := uuid.NewString()
	admin := srv.Client(parley.GRPC, servertest.AdminToken)
	_, err := admin.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: unknown})
	if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), unknown+" does not exist") {
		t.Fatalf("admin, unknown conversation: %v", err)
	}
	_, err = admin.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: "not-an-id"})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "conversation_id: must be a valid UUID") {
		t.Fatalf("malformed id: %v", err)
	}
	// Agents and guests are denied before existence is checked, so
	// probing ids tells them nothing.
	agent := srv.Client(parley.GRPC, servertest.BethToken)
	_, err = agent.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: unknown, ClientMessageId: "m1", Text: "hi"})
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("agent, unknown conversation: %v", err)
	}
	_, err = agent.Cases.CreateCaseForGuest(ctx, &parleyv1.CreateCaseForGuestRequest{ConversationId: unknown, RequestId: uuid.NewString()})
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("agent, case for unknown conversation: %v", err)
	}
	if n, err := srv.DB.ServiceCase.Query().Count(ctx); err != nil || n != 0 {
		t.Fatalf("%d cases stored (%v)", n, err)
	}
}

func TestSettingsValidation(t *testing.T) {
	srv := servertest.Start(t)
	ctx := context.Background()
	admin := srv.Client(parley.Connect, servertest.AdminToken)
	_, err := admin.Session.UpdateSettings(ctx, &parleyv1.UpdateSettingsRequest{Settings: &parleyv1.Settings{
		MaxGuestSessionsPerHour: -1,
		IssueTypes:              []*parleyv1.IssueType{{Value: "Billing Issues", DisplayName: "Billing"}},
	}})
	for _, want := range []string{"max_guest_sessions_per_hour", "guest_sessions_rate_limit_reached_message", "issue_types[0].value"} {
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want InvalidArgument naming %s", err, want)
		}
	}
	got, err := admin.Session.GetSettings(ctx, &parleyv1.GetSettingsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetSettings().GetMaxGuestSessionsPerHour() != 100 {
		t.Fatalf("settings changed by a rejected update: %v", got.GetSettings())
	}
	// Guests may not read or change settings.
	_, err = srv.Client(parley.Connect, "").Session.GetSettings(ctx, &parleyv1.GetSettingsRequest{})
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("anonymous GetSettings: %v", err)
	}
}
