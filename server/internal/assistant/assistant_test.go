package assistant_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/servertest"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// The demo's two entry points: the messenger starts with the bot, the
// portal's pre-chat form goes straight to a queue; both say so in the
// controller, in the API and in the log.
func TestEntryPointsPickTheController(t *testing.T) {
	ctx := testContext(t)
	srv := servertest.Start(t)

	portal, evs := startGuestOn(ctx, t, srv, parleyv1.Channel_CHANNEL_WEB_PORTAL, "billing", "I was charged twice.")
	conv := portal.conversation()
	if conv.GetController() != parleyv1.Controller_CONTROLLER_PENDING_AGENT || conv.GetState() != parleyv1.ConversationState_CONVERSATION_STATE_QUEUED || conv.GetQueueId() == "" {
		t.Fatalf("portal chat: controller %v, state %v, queue %q", conv.GetController(), conv.GetState(), conv.GetQueueId())
	}
	if ccs := controllerChanges(evs); len(ccs) != 1 || ccs[0].GetController() != parleyv1.Controller_CONTROLLER_PENDING_AGENT || ccs[0].GetReason() != "start" {
		t.Fatalf("portal chat controller changes = %v", ccs)
	}
	if text := botText(evs); text != "" {
		t.Fatalf("the bot spoke in a portal chat: %q", text)
	}

	messenger, evs := startGuest(ctx, t, srv, "billing", "")
	conv = messenger.conversation()
	if conv.GetController() != parleyv1.Controller_CONTROLLER_BOT || conv.GetState() != parleyv1.ConversationState_CONVERSATION_STATE_BOT || conv.GetQueueId() != "" {
		t.Fatalf("messenger chat: controller %v, state %v, queue %q", conv.GetController(), conv.GetState(), conv.GetQueueId())
	}
	if ccs := controllerChanges(evs); len(ccs) != 1 || ccs[0].GetController() != parleyv1.Controller_CONTROLLER_BOT {
		t.Fatalf("messenger chat controller changes = %v", ccs)
	}
	if botText(evs) == "" {
		t.Fatal("the bot did not greet the messenger guest")
	}
	for _, e := range evs {
		if isBot(e) && e.GetSender().GetDisplayName() == "" {
			t.Fatalf("bot message without a display name: %v", e)
		}
	}

	// A signed-in customer on the mobile app gets the bot too.
	customer := srv.Client(parley.Connect, srv.CustomerToken(t, "cust-1", "Alan Turing", "alan@example.com"))
	started, err := customer.Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{
		RequestId: "8e0f5c5e-3a52-4c41-9a39-3c1f4d0f6a01", IssueType: "order", Channel: parleyv1.Channel_CHANNEL_MOBILE,
	})
	must(t, err)
	if c := started.GetConversation().GetController(); c != parleyv1.Controller_CONTROLLER_BOT {
		t.Fatalf("mobile customer chat controller = %v", c)
	}
}

// A topic fills its slots over several messages, then hands off to the
// queue it names with what it captured; the agent gets the summary with
// the offer; once the agent accepts, the bot is silent.
func TestTopicFillsSlotsAndHandsOff(t *testing.T) {
	ctx := testContext(t)
	srv := servertest.Start(t)
	queues := queueIDs(ctx, t, srv)
	beth := srv.Client(parley.Connect, servertest.BethToken)

	// The guest picked "order" on the form; the topic's hand-off to
	// Billing Support, not the issue type, decides the queue.
	c, evs := startGuest(ctx, t, srv, "order", "There's a charge on my card I don't recognize, I want to dispute it")
	if text := botText(evs); text == "" {
		t.Fatal("no answer to the first message")
	}
	c.say("the order number is 10001")
	evs = c.say("they charged me $45.99")
	ccs := controllerChanges(evs)
	if len(ccs) != 1 || ccs[0].GetController() != parleyv1.Controller_CONTROLLER_PENDING_AGENT || ccs[0].GetPrevious() != parleyv1.Controller_CONTROLLER_BOT || ccs[0].GetReason() != "topic" {
		t.Fatalf("controller changes after the last slot = %v; bot said %q", ccs, botText(evs))
	}
	conv := c.conversation()
	in := conv.GetInteraction()
	if conv.GetQueueId() != queues["Billing Support"] || in.GetIntent() != "billing_dispute" ||
		in.GetSlots()["order_number"] != "10001" || !strings.HasPrefix(in.GetSlots()["amount"], "45.99") {
		t.Fatalf("after hand-off: queue %s (billing %s), intent %q, slots %v", conv.GetQueueId(), queues["Billing Support"], in.GetIntent(), in.GetSlots())
	}

	// Until an agent accepts, the bot tells the customer where they stand.
	for deadline := time.Now().Add(turnTimeout); !strings.Contains(botText(c.events(0)), "next in line"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the bot never told the waiting customer their place: %q", botText(c.events(0)))
		}
	}

	// Beth takes it, with the summary in the offer.
	setAvailable(ctx, t, beth)
	offer := nextOffer(ctx, t, beth)
	sum := offer.GetHandoffSummary()
	if sum.GetReason() != "topic" || sum.GetIntent() != "billing_dispute" || sum.GetSlots()["order_number"] != "10001" ||
		len(sum.GetCustomerMessages()) == 0 || !strings.Contains(sum.GetCustomerMessages()[0], "dispute") || !strings.Contains(sum.GetText(), "10001") {
		t.Fatalf("offer summary = %v", sum)
	}
	_, err := beth.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: offer.GetId()})
	must(t, err)
	evs = c.readAll()
	if ccs := controllerChanges(evs); len(ccs) != 1 || ccs[0].GetController() != parleyv1.Controller_CONTROLLER_AGENT {
		t.Fatalf("controller changes at accept = %v", ccs)
	}

	// The bot is silent now, even for what it would otherwise answer.
	c.send("how do I reset my password?")
	_, err = beth.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: c.id, ClientMessageId: "beth-1", Text: "Hi, Beth here."})
	must(t, err)
	for _, e := range c.readAll() {
		if isBot(e) {
			t.Fatalf("the bot spoke in a chat an agent holds: %v", e)
		}
	}
}

func setAvailable(ctx context.Context, t *testing.T, agent *parley.Client) {
	t.Helper()
	_, err := agent.Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AVAILABLE})
	must(t, err)
}

// nextOffer waits for the agent's next offer on a fresh work stream.
func nextOffer(ctx context.Context, t *testing.T, agent *parley.Client) *parleyv1.Offer {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, turnTimeout)
	defer cancel()
	stream, err := agent.Routing.WatchWork(ctx, &parleyv1.WatchWorkRequest{})
	must(t, err)
	defer stream.Close()
	for {
		resp, err := stream.Receive()
		if err != nil {
			t.Fatalf("watch work: %v", err)
		}
		if o := resp.GetOffer(); o != nil {
			return o
		}
	}
}

// The order_status topic fills its slot from the first message and
// answers with the lookup action's result, without a person.
func TestOrderStatusAnsweredFromTheLookup(t *testing.T) {
	ctx := testContext(t)
	srv := servertest.Start(t)
	c, evs := startGuest(ctx, t, srv, "order", "hi, where is my order 10001? it hasn't arrived")
	text := strings.ToLower(botText(evs))
	if !strings.Contains(text, "shipped") || !strings.Contains(text, "ups") {
		t.Fatalf("order status answer = %q", text)
	}
	conv := c.conversation()
	if conv.GetController() != parleyv1.Controller_CONTROLLER_BOT || conv.GetInteraction().GetIntent() != "order_status" ||
		conv.GetInteraction().GetSlots()["order_number"] != "10001" {
		t.Fatalf("after the answer: controller %v, intent %q, slots %v", conv.GetController(), conv.GetInteraction().GetIntent(), conv.GetInteraction().GetSlots())
	}
	// Asked over two messages, for an order the lookup does not know.
	c2, _ := startGuest(ctx, t, srv, "order", "I'd like to track my package")
	evs = c2.say("98765")
	if strings.Contains(strings.ToLower(botText(evs)), "shipped") {
		t.Fatalf("an unknown order got a status: %q", botText(evs))
	}
}

// A request for a person hands off from any state: idle, in the middle of
// filling a slot, in French.
func TestPersonRequestHandsOffFromAnyState(t *testing.T) {
	ctx := testContext(t)
	srv := servertest.Start(t)
	queues := queueIDs(ctx, t, srv)
	for name, script := range map[string][]string{
		"idle":        {"", "can I talk to a real person please"},
		"first":       {"AGENT!!!"},
		"mid-slot":    {"I need to dispute a charge", "no, just get me a human"},
		"french":      {"Bonjour", "je voudrais parler à un conseiller"},
		"after topic": {"where is order 10001", "that doesn't help, operator"},
	} {
		t.Run(name, func(t *testing.T) {
			c, evs := startGuest(ctx, t, srv, "order", script[0])
			for _, text := range script[1:] {
				evs = c.say(text)
			}
			ccs := controllerChanges(evs)
			if len(ccs) == 0 || ccs[len(ccs)-1].GetController() != parleyv1.Controller_CONTROLLER_PENDING_AGENT || ccs[len(ccs)-1].GetReason() != "customer_asked" {
				t.Fatalf("controller changes = %v; bot said %q", ccs, botText(evs))
			}
			if q := c.conversation().GetQueueId(); q != queues["Order Support"] {
				t.Fatalf("queue = %s, want Order Support (the rules on issue type)", q)
			}
		})
	}
}

// Matching rules route on what the bot captured: a rule on the intent
// beats the one on the form's issue type.
func TestHandoffRoutesByCapturedIntent(t *testing.T) {
	ctx := testContext(t)
	srv := servertest.Start(t)
	queues := queueIDs(ctx, t, srv)
	admin := srv.Client(parley.Connect, servertest.AdminToken)
	_, err := admin.Routing.CreateMatchingRule(ctx, &parleyv1.CreateMatchingRuleRequest{
		DisplayName: "Order questions to Product Support", Order: 1, QueueId: queues["Product Support"],
		Condition: &parleyv1.Condition{Kind: &parleyv1.Condition_FieldIn{FieldIn: &parleyv1.FieldIn{Field: "intent", Values: []string{"order_status"}}}},
	})
	must(t, err)
	c, _ := startGuest(ctx, t, srv, "billing", "where's my order 10001")
	c.say("I want to speak to someone")
	if q := c.conversation().GetQueueId(); q != queues["Product Support"] {
		t.Fatalf("queue = %s, want Product Support %s (the intent rule)", q, queues["Product Support"])
	}
}

// An agent can hand a chat back to the bot, which then answers again.
func TestHandBackToBot(t *testing.T) {
	ctx := testContext(t)
	srv := servertest.Start(t)
	beth := srv.Client(parley.Connect, servertest.BethToken)
	fred := srv.Client(parley.Connect, servertest.FredToken)
	c, _ := startGuest(ctx, t, srv, "billing", "agent please")
	setAvailable(ctx, t, beth)
	offer := nextOffer(ctx, t, beth)
	_, err := beth.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: offer.GetId()})
	must(t, err)

	// What the customer tells the agent is the agent's to answer, even
	// once the bot is back.
	c.send("where is my order 10001?")
	c.send("and please have an agent call me back")
	c.readAll()

	_, err = fred.Assistant.HandBackToBot(ctx, &parleyv1.HandBackToBotRequest{ConversationId: c.id})
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("an agent who does not hold the chat handed it back: %v", err)
	}
	resp, err := beth.Assistant.HandBackToBot(ctx, &parleyv1.HandBackToBotRequest{ConversationId: c.id, Note: "answered"})
	must(t, err)
	if resp.GetConversation().GetController() != parleyv1.Controller_CONTROLLER_BOT || resp.GetConversation().GetAgentId() != "" {
		t.Fatalf("after hand-back: %v", resp.GetConversation())
	}
	c.readAll()
	evs := c.say("how long does delivery take?")
	if botText(evs) == "" || strings.Contains(strings.ToLower(botText(evs)), "shipped") || len(controllerChanges(evs)) != 0 {
		t.Fatalf("after the hand-back the bot answered %q with controller changes %v; want an answer to the new question only", botText(evs), controllerChanges(evs))
	}
	if c.conversation().GetController() != parleyv1.Controller_CONTROLLER_BOT {
		t.Fatal("the bot handed the chat off again after the hand-back")
	}
	_, err = beth.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: c.id, ClientMessageId: "late", Text: "one more thing"})
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("Beth posted after handing back: %v", err)
	}
}
