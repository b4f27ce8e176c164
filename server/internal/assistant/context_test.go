package assistant_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/assistant/llm"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// The context call gives the agent the customer, their other chats and
// cases, what the bot captured, the summary and articles for the latest
// message; only those who may read the chat get it.
func TestConversationContext(t *testing.T) {
	ctx := testContext(t)
	srv := servertest.Start(t)
	beth := srv.Client(parley.Connect, servertest.BethToken)
	fred := srv.Client(parley.Connect, servertest.FredToken)
	customer := srv.Client(parley.Connect, srv.CustomerToken(t, "cust-ctx", "Katherine Johnson", "kj@example.com"))

	// An earlier chat on the portal, closed, with a case.
	earlier, err := customer.Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{
		RequestId: uuid.NewString(), IssueType: "billing", FirstMessage: "My invoice is wrong", Channel: parleyv1.Channel_CHANNEL_WEB_PORTAL,
	})
	must(t, err)
	setAvailable(ctx, t, beth)
	offer := nextOffer(ctx, t, beth)
	_, err = beth.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: offer.GetId()})
	must(t, err)
	made, err := beth.Cases.CreateCaseForGuest(ctx, &parleyv1.CreateCaseForGuestRequest{
		ConversationId: earlier.GetConversation().GetId(), RequestId: uuid.NewString(), ShortDescription: "Invoice correction",
	})
	must(t, err)
	_, err = customer.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: earlier.GetConversation().GetId()})
	must(t, err)

	// Now on the mobile app, with the bot, then asking for a person.
	started, err := customer.Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{
		RequestId: uuid.NewString(), IssueType: "order", Channel: parleyv1.Channel_CHANNEL_MOBILE,
	})
	must(t, err)
	c := &chat{t: t, ctx: ctx, srv: srv, client: customer, id: started.GetConversation().GetId()}
	c.readAll()
	c.say("where is my order 10001")
	c.say("my parcel is damaged and I want to send it back, let me talk to a human")
	offer = nextOffer(ctx, t, beth)

	// Fred is in neither the chat's queue (Order Support) nor offered it.
	_, err = fred.Assistant.GetConversationContext(ctx, &parleyv1.GetConversationContextRequest{ConversationId: c.id})
	if code := connect.CodeOf(err); code != connect.CodeNotFound && code != connect.CodePermissionDenied {
		t.Fatalf("an agent outside the chat's queue read its context: %v", err)
	}
	got, err := beth.Assistant.GetConversationContext(ctx, &parleyv1.GetConversationContextRequest{ConversationId: c.id})
	must(t, err)
	if got.GetConsumer().GetEmail() != "kj@example.com" {
		t.Fatalf("consumer = %v", got.GetConsumer())
	}
	if len(got.GetOtherConversations()) != 1 || got.GetOtherConversations()[0].GetId() != earlier.GetConversation().GetId() {
		t.Fatalf("other conversations = %v", got.GetOtherConversations())
	}
	if len(got.GetCases()) != 1 || got.GetCases()[0].GetId() != made.GetCase().GetId() {
		t.Fatalf("cases = %v", got.GetCases())
	}
	if in := got.GetConversation().GetInteraction(); in.GetIntent() != "order_status" || in.GetSlots()["order_number"] != "10001" {
		t.Fatalf("captured = %q %v", in.GetIntent(), in.GetSlots())
	}
	sum := got.GetSummary()
	if sum.GetReason() != "customer_asked" || sum.GetIntent() != "order_status" || len(sum.GetActionResults()) == 0 ||
		sum.GetActionResults()[0].GetValues()["status"] != "shipped" || !strings.Contains(sum.GetText(), "shipped") {
		t.Fatalf("summary = %v", sum)
	}
	if !strings.Contains(got.GetLatestCustomerMessage(), "damaged") || len(got.GetSuggestedArticles()) == 0 {
		t.Fatalf("latest message %q, suggestions %v", got.GetLatestCustomerMessage(), got.GetSuggestedArticles())
	}
	found := false
	for _, a := range got.GetSuggestedArticles() {
		found = found || strings.HasPrefix(a.GetExternalId(), "returns/")
	}
	if !found {
		t.Fatalf("no returns article suggested for a damaged parcel: %v", got.GetSuggestedArticles())
	}
	if offer.GetHandoffSummary().GetText() != sum.GetText() {
		t.Fatalf("the offer's summary differs from the context's:\n%s\n---\n%s", offer.GetHandoffSummary().GetText(), sum.GetText())
	}
}

// A guest's typed email finds other guests' chats, never a signed-in
// customer's: an email on a form proves nothing.
func TestGuestContextNeverShowsACustomersChats(t *testing.T) {
	ctx := testContext(t)
	srv := servertest.Start(t)
	beth := srv.Client(parley.Connect, servertest.BethToken)
	victim := srv.Client(parley.Connect, srv.CustomerToken(t, "victim", "Vic Tim", "victim@example.com"))
	_, err := victim.Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{
		RequestId: uuid.NewString(), IssueType: "billing", FirstMessage: "I dispute $99.99 on order 10001", Channel: parleyv1.Channel_CHANNEL_WEB_PORTAL,
	})
	must(t, err)
	anon := srv.Client(parley.Connect, "")
	earlier, err := anon.Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Vic", Email: "VICTIM@example.com", IssueType: "order", Channel: parleyv1.Channel_CHANNEL_WEB_PORTAL,
	})
	must(t, err)
	impostor, err := anon.Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Not Vic", Email: "victim@example.com", IssueType: "billing", Channel: parleyv1.Channel_CHANNEL_WEB_PORTAL,
	})
	must(t, err)
	got, err := beth.Assistant.GetConversationContext(ctx, &parleyv1.GetConversationContextRequest{ConversationId: impostor.GetConversation().GetId()})
	must(t, err)
	if len(got.GetOtherConversations()) != 1 || got.GetOtherConversations()[0].GetId() != earlier.GetConversation().GetId() || got.GetConsumer() != nil {
		t.Fatalf("a guest's context shows %v (consumer %v); want only the other guest chat with that email", got.GetOtherConversations(), got.GetConsumer())
	}
}

// fakeLLM is an OpenAI-compatible chat-completions endpoint.
func fakeLLM(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) *llm.Client {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(handle))
	t.Cleanup(ts.Close)
	client, err := llm.New(llm.Config{BaseURL: ts.URL + "/v1", Model: "fake-model", APIKey: "sk-test", Timeout: 200 * time.Millisecond}, ts.Client())
	must(t, err)
	return client
}

// With an LLM configured, the generated summary joins the extractive
// one; a failing or hanging LLM leaves the extractive one and the chat
// goes on.
func TestGeneratedSummary(t *testing.T) {
	testDone := make(chan struct{})
	t.Cleanup(func() { close(testDone) })
	for name, tc := range map[string]struct {
		handle func(w http.ResponseWriter, r *http.Request)
		want   string
	}{
		"success": {func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"choices": []any{map[string]any{"message": map[string]any{"role": "assistant", "content": "Customer asks about order 10001."}}}})
		}, "Customer asks about order 10001."},
		"error": {func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":{"message":"overloaded"}}`, http.StatusInternalServerError)
		}, ""},
		"timeout": {func(w http.ResponseWriter, r *http.Request) {
			// The server notices a client that gave up only once it read
			// the request.
			_, _ = io.Copy(io.Discard, r.Body)
			select { // until the client gives up, or the test ends
			case <-r.Context().Done():
			case <-testDone:
			}
		}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			srv := servertest.Start(t, servertest.WithAppOptions(app.Options{LLM: fakeLLM(t, tc.handle)}))
			beth := srv.Client(parley.Connect, servertest.BethToken)
			c, _ := startGuest(ctx, t, srv, "order", "where is order 10001")
			evs := c.say("talk to a person")
			if ccs := controllerChanges(evs); len(ccs) != 1 || ccs[0].GetController() != parleyv1.Controller_CONTROLLER_PENDING_AGENT {
				t.Fatalf("no hand-off: %v", ccs)
			}
			setAvailable(ctx, t, beth)
			offer := nextOffer(ctx, t, beth)
			if offer.GetHandoffSummary().GetText() == "" {
				t.Fatal("no extractive summary in the offer")
			}
			deadline := time.Now().Add(turnTimeout)
			for {
				got, err := beth.Assistant.GetConversationContext(ctx, &parleyv1.GetConversationContextRequest{ConversationId: c.id})
				must(t, err)
				gen := got.GetSummary().GetGeneratedText()
				if tc.want != "" && gen == tc.want {
					return
				}
				if tc.want == "" && strings.Contains(srv.Log.String(), "generated summary") {
					if gen != "" {
						t.Fatalf("generated text from a failing LLM: %q", gen)
					}
					if got.GetSummary().GetText() == "" {
						t.Fatal("the extractive summary is gone")
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("generated summary = %q, want %q; log:\n%s", gen, tc.want, srv.Log.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// The configuration is checked before it is stored; storing the same
// text again changes nothing.
func TestUpdateBotConfig(t *testing.T) {
	ctx := testContext(t)
	srv := servertest.Start(t)
	admin := srv.Client(parley.Connect, servertest.AdminToken)
	cur, err := admin.Assistant.GetBotConfig(ctx, &parleyv1.GetBotConfigRequest{})
	must(t, err)
	if !strings.Contains(cur.GetYaml(), "order_status") {
		t.Fatalf("the demo configuration lacks order_status:\n%s", cur.GetYaml())
	}
	for name, text := range map[string]string{
		"not yaml":       "topics: [",
		"unknown key":    "topics:\n  - id: x\n    nmae: X\n",
		"unknown action": strings.ReplaceAll(cur.GetYaml(), "lookup_order", "launch_rockets"),
		"unknown queue":  strings.ReplaceAll(cur.GetYaml(), "queue: Billing Support", "queue: Nowhere"),
	} {
		_, err := admin.Assistant.UpdateBotConfig(ctx, &parleyv1.UpdateBotConfigRequest{Yaml: text})
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: err = %v, want InvalidArgument", name, err)
		}
	}
	again, err := admin.Assistant.UpdateBotConfig(ctx, &parleyv1.UpdateBotConfigRequest{Yaml: cur.GetYaml()})
	must(t, err)
	if again.GetVersion() != cur.GetVersion() {
		t.Fatalf("storing the same configuration moved the version %d -> %d", cur.GetVersion(), again.GetVersion())
	}
	// A queue the configuration hands off to by name keeps its name;
	// the others may be renamed.
	queues := queueIDs(ctx, t, srv)
	_, err = admin.Routing.UpdateQueue(ctx, &parleyv1.UpdateQueueRequest{QueueId: queues["Billing Support"], DisplayName: "Billing Renamed"})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("renaming a queue the bot hands off to: %v, want FailedPrecondition", err)
	}
	_, err = admin.Routing.UpdateQueue(ctx, &parleyv1.UpdateQueueRequest{QueueId: queues["Product Support"], DisplayName: "Product Help"})
	must(t, err)
	topics, err := srv.Client(parley.Connect, servertest.BethToken).Assistant.ListTopics(ctx, &parleyv1.ListTopicsRequest{})
	must(t, err)
	ids := map[string]bool{}
	for _, tp := range topics.GetTopics() {
		ids[tp.GetId()] = true
	}
	for _, id := range []string{"order_status", "billing_dispute", "password_reset"} {
		if !ids[id] {
			t.Errorf("topic %s missing from %v", id, ids)
		}
	}
	_, err = srv.Client(parley.Connect, servertest.BethToken).Assistant.UpdateBotConfig(ctx, &parleyv1.UpdateBotConfigRequest{Yaml: cur.GetYaml()})
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("an agent changed the bot configuration: %v", err)
	}
}
