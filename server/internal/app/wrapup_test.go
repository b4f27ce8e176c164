package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// heldByBeth starts a guest chat in Billing Support and has Beth accept it.
func heldByBeth(ctx context.Context, t *testing.T, srv *servertest.Server) (guest *parley.Client, convID string) {
	t.Helper()
	guest, convID = startGuestChat(ctx, t, srv, "billing")
	beth := srv.Client(parley.Connect, servertest.BethToken)
	setPresence(ctx, t, beth, parleyv1.Presence_PRESENCE_AVAILABLE)
	work := watchWork(ctx, t, beth)
	must(t, srv.App.Dispatch(ctx))
	_, err := beth.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: work.nextOffer(t).GetId()})
	must(t, err)
	return guest, convID
}

// TestWrapUpIsForStaffOnly: an agent's wrap-up (an outcome from the
// settings and internal notes) is kept on the conversation for staff; the
// customer never receives it, in any answer or in the log.
func TestWrapUpIsForStaffOnly(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0))
	ctx := t.Context()
	guest, convID := heldByBeth(ctx, t, srv)
	beth := srv.Client(parley.Connect, servertest.BethToken)
	const notes = "Customer was rude; flagged for review"

	// A code that is not configured is refused, and the chat stays open.
	_, err := beth.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: convID, WrapUpCode: "solved"})
	wantReason(t, "close with an unknown code", err, connect.CodeInvalidArgument, "WRAP_UP_CODE_UNKNOWN")
	if !strings.Contains(err.Error(), "resolved, follow_up") {
		t.Errorf("unknown code: %v, want the configured codes named", err)
	}
	// The guest may not record a wrap-up.
	_, err = guest.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: convID, WrapUpNotes: "I was fine"})
	wantReason(t, "guest's wrap-up", err, connect.CodeInvalidArgument, "WRAP_UP_NOT_ALLOWED")
	got, err := guest.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: convID})
	must(t, err)
	if got.GetConversation().GetState() != parleyv1.ConversationState_CONVERSATION_STATE_ASSIGNED {
		t.Fatalf("refused closes changed the chat: %v", got.GetConversation().GetState())
	}

	sub := follow(ctx, t, guest, convID)
	closed, err := beth.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{
		ConversationId: convID, WrapUpCode: "follow_up", WrapUpNotes: "  " + notes + "\n",
	})
	must(t, err)
	w := closed.GetConversation().GetWrapUp()
	if w.GetCode() != "follow_up" || w.GetLabel() != "Follow-up needed" || w.GetNotes() != notes || w.GetClosedBy() == "" || !w.GetCreateTime().AsTime().Equal(hostileT0) {
		t.Fatalf("wrap-up in the close answer: %v", w)
	}
	for name, c := range map[string]*parley.Client{
		"Beth": beth, "a supervisor": srv.Client(parley.Connect, "ps_demo_supervisor"), "an admin": srv.Client(parley.Connect, servertest.AdminToken),
	} {
		got, err := c.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: convID})
		must(t, err)
		if got.GetConversation().GetWrapUp().GetNotes() != notes {
			t.Errorf("%s reads wrap-up %v", name, got.GetConversation().GetWrapUp())
		}
	}

	// The guest's stream ends with the closing event, which says "closed
	// by agent", never the outcome or the notes.
	var closing *parleyv1.Event
	check := func(e *parleyv1.Event) {
		raw, _ := protojson.Marshal(e)
		if strings.Contains(string(raw), "rude") || strings.Contains(string(raw), "Follow-up") {
			t.Fatalf("the guest's stream carried the wrap-up: %s", raw)
		}
		if e.GetConversationClosed() != nil {
			closing = e
		}
	}
	for closing == nil {
		select {
		case e := <-sub.events:
			check(e)
		case err := <-sub.end:
			// Events received before the end may still be buffered.
			for len(sub.events) > 0 {
				check(<-sub.events)
			}
			if closing == nil {
				t.Fatalf("the guest's stream ended before the closing event: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("the closing event never reached the guest")
		}
	}
	if r := closing.GetConversationClosed().GetReason(); r != "closed by agent" {
		t.Errorf("closing reason %q, want the neutral default", r)
	}

	// A later chat of the same guest shows the earlier wrap-up to its agent.
	_, err = srv.Client(parley.Connect, servertest.FredToken).Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AWAY})
	must(t, err)
	_, next := heldByBeth(ctx, t, srv)
	cx, err := beth.Assistant.GetConversationContext(ctx, &parleyv1.GetConversationContextRequest{ConversationId: next})
	must(t, err)
	if len(cx.GetWrapUpCodes()) != 5 || cx.GetWrapUpCodes()[0].GetCode() != "resolved" || cx.GetWrapUpRequired() {
		t.Errorf("context wrap-up codes %v, required %v", cx.GetWrapUpCodes(), cx.GetWrapUpRequired())
	}
	found := false
	for _, o := range cx.GetOtherConversations() {
		if o.GetId() == convID {
			found = o.GetWrapUp().GetNotes() == notes
		}
	}
	if !found {
		t.Errorf("the earlier chat's wrap-up is not in the context: %v", cx.GetOtherConversations())
	}
}

// TestWrapUpRequired: with wrap_up_required an agent must pick an outcome;
// a supervisor closes without one; the settings refuse a requirement with
// no codes to pick.
func TestWrapUpRequired(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0))
	ctx := t.Context()
	admin := srv.Client(parley.Connect, servertest.AdminToken)
	set, err := admin.Session.GetSettings(ctx, &parleyv1.GetSettingsRequest{})
	must(t, err)
	s := set.GetSettings()
	s.WrapUpRequired = true
	s.WrapUpCodes = nil
	_, err = admin.Session.UpdateSettings(ctx, &parleyv1.UpdateSettingsRequest{Settings: s})
	wantReason(t, "required with no codes", err, connect.CodeInvalidArgument, "WRAP_UP_CODES_MISSING")
	for _, label := range []string{"\u200b ", "\u3164", "\u2800", "\ufe0f", "\u034f\u17b4", "\uffa0\u115f\u1160", "\u00a0\u3000"} {
		s.WrapUpCodes = []*parleyv1.WrapUpCode{{Code: "done", Label: label}}
		_, err = admin.Session.UpdateSettings(ctx, &parleyv1.UpdateSettingsRequest{Settings: s})
		wantReason(t, fmt.Sprintf("blank label %+q", label), err, connect.CodeInvalidArgument, "WRAP_UP_LABEL_BLANK")
	}
	s.WrapUpCodes = []*parleyv1.WrapUpCode{{Code: "done", Label: "Done"}, {Code: "done", Label: "Done again"}}
	_, err = admin.Session.UpdateSettings(ctx, &parleyv1.UpdateSettingsRequest{Settings: s})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "unique codes") {
		t.Fatalf("duplicate codes: %v", err)
	}
	s.WrapUpCodes = []*parleyv1.WrapUpCode{{Code: "done", Label: "Done"}, {Code: "love", Label: "\u2764\ufe0f"}, {Code: "cafe", Label: "Cafe\u0301"}}
	_, err = admin.Session.UpdateSettings(ctx, &parleyv1.UpdateSettingsRequest{Settings: s})
	must(t, err)

	_, convID := heldByBeth(ctx, t, srv)
	beth := srv.Client(parley.Connect, servertest.BethToken)
	_, err = beth.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: convID, WrapUpNotes: "no code"})
	wantReason(t, "agent's close without a code", err, connect.CodeInvalidArgument, "WRAP_UP_CODE_REQUIRED")
	if !strings.Contains(err.Error(), "one of done, love, cafe") {
		t.Errorf("required code: %v, want the codes named", err)
	}
	closed, err := beth.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: convID, WrapUpCode: "done"})
	must(t, err)
	if w := closed.GetConversation().GetWrapUp(); w.GetCode() != "done" || w.GetLabel() != "Done" || w.GetNotes() != "" {
		t.Fatalf("wrap-up %v", w)
	}

	_, other := startGuestChat(ctx, t, srv, "billing")
	sup := srv.Client(parley.Connect, "ps_demo_supervisor")
	closed, err = sup.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: other, Reason: "spam", WrapUpNotes: "\u200b \ufeff"})
	must(t, err)
	if closed.GetConversation().GetWrapUp() != nil {
		t.Fatalf("a close with no wrap-up (invisible notes) recorded one: %v", closed.GetConversation().GetWrapUp())
	}
	_, third := startGuestChat(ctx, t, srv, "billing")
	closed, err = sup.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: third, WrapUpNotes: "\u200bduplicate of an earlier chat\u200b"})
	must(t, err)
	if w := closed.GetConversation().GetWrapUp(); w.GetNotes() != "duplicate of an earlier chat" || !strings.HasPrefix(w.GetClosedBy(), "supervisor:") {
		t.Fatalf("a supervisor's wrap-up: %v, want trimmed notes and closed_by naming the supervisor", w)
	}
}
