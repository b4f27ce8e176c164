package cases_test

import (
	"context"
	"testing"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	"github.com/parleyhq/parley/ent/offer"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/servertest"
)

func TestCreateCaseIsIdempotent(t *testing.T) {
	srv := servertest.Start(t)
	ctx := context.Background()
	beth := srv.Client(parley.Connect, servertest.BethToken)
	if _, err := beth.Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AVAILABLE}); err != nil {
		t.Fatal(err)
	}
	started, err := srv.Client(parley.Connect, "").Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "billing",
	})
	if err != nil {
		t.Fatal(err)
	}
	convID := started.GetConversation().GetId()
	if err := srv.App.Dispatch(ctx); err != nil {
		t.Fatal(err)
	}
	o, err := srv.DB.Offer.Query().Where(offer.StateEQ(offer.StatePending)).Only(ctx)
	if err != nil {
		t.Fatalf("no pending offer for Beth: %v", err)
	}
	if _, err := beth.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: o.ID.String()}); err != nil {
		t.Fatal(err)
	}

	req := &parleyv1.CreateConsumerAndCaseForGuestRequest{ConversationId: convID, RequestId: uuid.NewString(), ShortDescription: "Refund"}
	first, err := beth.Cases.CreateConsumerAndCaseForGuest(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := beth.Cases.CreateConsumerAndCaseForGuest(ctx, req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if again.GetCase().GetNumber() != first.GetCase().GetNumber() || again.GetConsumer().GetId() != first.GetConsumer().GetId() {
		t.Fatalf("retry made a new case or consumer: %v then %v", first, again)
	}
	req.ShortDescription = "Something else"
	_, err = beth.Cases.CreateConsumerAndCaseForGuest(ctx, req)
	if connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Fatalf("reused request id: %v", err)
	}
	// Neither the guest nor an agent who does not hold the chat may open cases.
	guest := srv.Client(parley.Connect, started.GetGuestToken())
	_, err = guest.Cases.CreateCaseForGuest(ctx, &parleyv1.CreateCaseForGuestRequest{ConversationId: convID, RequestId: uuid.NewString()})
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("guest: %v", err)
	}
	fred := srv.Client(parley.Connect, servertest.FredToken)
	_, err = fred.Cases.CreateCaseForGuest(ctx, &parleyv1.CreateCaseForGuestRequest{ConversationId: convID, RequestId: uuid.NewString()})
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("agent not holding the chat: %v", err)
	}
	for what, count := range map[string]func(context.Context) (int, error){
		"cases":     srv.DB.ServiceCase.Query().Count,
		"consumers": srv.DB.Consumer.Query().Count,
	} {
		if n, err := count(ctx); err != nil || n != 1 {
			t.Fatalf("%d %s (%v), want 1", n, what, err)
		}
	}

	// Keys are scoped to their caller: a waiting guest who leaves a
	// message with Beth's request id gets a case of their own.
	waiting, err := srv.Client(parley.Connect, "").Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Alan", Email: "alan@example.com", IssueType: "product",
	})
	if err != nil {
		t.Fatal(err)
	}
	left, err := srv.Client(parley.Connect, waiting.GetGuestToken()).Session.LeaveMessage(ctx, &parleyv1.LeaveMessageRequest{
		ConversationId: waiting.GetConversation().GetId(), RequestId: req.GetRequestId(), Text: "Call me back.",
	})
	if err != nil {
		t.Fatalf("another caller's request id: %v", err)
	}
	if left.GetCaseNumber() == first.GetCase().GetNumber() {
		t.Fatalf("the guest got Beth's case %s", left.GetCaseNumber())
	}
	// The case of a left message is new, unassigned and unchanged.
	listed, err := srv.Client(parley.Connect, servertest.AdminToken).Cases.ListCases(ctx, &parleyv1.ListCasesRequest{ConversationId: waiting.GetConversation().GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if cs := listed.GetCases(); len(cs) != 1 || cs[0].GetNumber() != left.GetCaseNumber() || cs[0].GetState() != parleyv1.CaseState_CASE_STATE_NEW ||
		cs[0].GetAssignedAgentId() != "" || !cs[0].GetUpdateTime().AsTime().Equal(cs[0].GetCreateTime().AsTime()) {
		t.Fatalf("the left message's case: %v", cs)
	}
}
