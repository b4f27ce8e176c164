package app_test

import (
	"net/http"
	"testing"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// TestCachedPrincipalsEndWithRevocation: the server caches who a token
// belongs to, and a revocation ends that at once: an agent token revoked
// by an admin, and a guest token revoked by a claim, are refused on the
// very next call, though each was just used (and so cached).
func TestCachedPrincipalsEndWithRevocation(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0))
	ctx := t.Context()

	token, tokenID := issueAgentToken(ctx, t, srv, "Fred Luddy")
	fred := srv.Client(parley.Connect, token)
	for range 3 {
		_, err := fred.Routing.ListQueues(ctx, &parleyv1.ListQueuesRequest{})
		must(t, err)
	}
	_, err := srv.Client(parley.Connect, servertest.AdminToken).Access.RevokeToken(ctx, &parleyv1.RevokeTokenRequest{TokenId: tokenID})
	must(t, err)
	_, err = fred.Routing.ListQueues(ctx, &parleyv1.ListQueuesRequest{})
	wantReason(t, "call right after the revocation", err, connect.CodeUnauthenticated, "INVALID_TOKEN")

	resp, err := srv.Client(parley.Connect, "").Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "order",
	})
	must(t, err)
	convID := resp.GetConversation().GetId()
	guest := srv.Client(parley.Connect, resp.GetGuestToken())
	for i := range 3 {
		_, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: uuid.NewString(), Text: "hello " + string(rune('a'+i))})
		must(t, err)
	}
	customer := parley.New(srv.URL, parley.WithToken(srv.CustomerToken(t, "ada", "Ada", "ada@example.com")),
		parley.WithHTTPClient(&http.Client{Transport: headerTransport{http.Header{"Parley-Guest-Token": {resp.GetGuestToken()}}, parley.DefaultHTTPClient().Transport}}))
	_, err = customer.Session.ClaimGuestConversation(ctx, &parleyv1.ClaimGuestConversationRequest{ConversationId: convID})
	must(t, err)
	_, err = guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: uuid.NewString(), Text: "still me?"})
	wantReason(t, "guest call right after the claim", err, connect.CodeUnauthenticated, "INVALID_TOKEN")
}
