package assistant_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// turnTimeout bounds the wait for the bot's answer; a turn takes
// milliseconds.
const turnTimeout = 15 * time.Second

// chat is a customer's conversation driven through the public API.
type chat struct {
	t      *testing.T
	ctx    context.Context
	srv    *servertest.Server
	client *parley.Client
	token  string
	id     string
	// seen is the seq of the last event read.
	seen int64
}

// startGuest starts a messenger guest chat (the demo's bot-first channel)
// with first as its first message.
func startGuest(ctx context.Context, t *testing.T, srv *servertest.Server, issueType, first string) (*chat, []*parleyv1.Event) {
	t.Helper()
	return startGuestOn(ctx, t, srv, parleyv1.Channel_CHANNEL_MESSENGER, issueType, first)
}

func startGuestOn(ctx context.Context, t *testing.T, srv *servertest.Server, channel parleyv1.Channel, issueType, first string) (*chat, []*parleyv1.Event) {
	t.Helper()
	started, err := srv.Client(parley.Connect, "").Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Grace Hopper", Email: "grace@example.com",
		IssueType: issueType, FirstMessage: first, Channel: channel,
	})
	if err != nil {
		t.Fatalf("start guest chat: %v", err)
	}
	c := &chat{t: t, ctx: ctx, srv: srv, client: srv.Client(parley.Connect, started.GetGuestToken()), token: started.GetGuestToken(), id: started.GetConversation().GetId()}
	if first == "" || started.GetConversation().GetController() != parleyv1.Controller_CONTROLLER_BOT {
		return c, c.readAll()
	}
	// The greeting follows the first message in the log; the answer to
	// the message follows the greeting.
	var greeting int64
	for _, e := range c.events(0) {
		if isBot(e) && greeting == 0 {
			greeting = e.GetSeq()
		}
	}
	return c, c.awaitAfter(greeting)
}

// say sends text and returns the events of the bot's answer (every event
// after the message, once the bot has answered).
func (c *chat) say(text string) []*parleyv1.Event {
	c.t.Helper()
	c.send(text)
	return c.awaitTurn()
}

// send sends text without waiting for an answer.
func (c *chat) send(text string) *parleyv1.Event {
	c.t.Helper()
	resp, err := c.client.Messaging.SendMessage(c.ctx, &parleyv1.SendMessageRequest{
		ConversationId: c.id, ClientMessageId: uuid.NewString(), Text: text,
	})
	if err != nil {
		c.t.Fatalf("send %q: %v", text, err)
	}
	return resp.GetEvent()
}

// awaitTurn waits until the bot answered the customer's latest message
// (a bot message or a controller change after it: the bot writes a turn
// in one transaction, so once one event of it shows, all do) and returns
// the events after the events already seen.
func (c *chat) awaitTurn() []*parleyv1.Event {
	c.t.Helper()
	return c.awaitAfter(0)
}

// awaitAfter is awaitTurn for an answer that comes after seq as well.
func (c *chat) awaitAfter(seq int64) []*parleyv1.Event {
	c.t.Helper()
	deadline := time.Now().Add(turnTimeout)
	for {
		evs := c.events(c.seen)
		lastCustomer := seq
		for _, e := range evs {
			if isCustomer(e) {
				lastCustomer = max(lastCustomer, e.GetSeq())
			}
		}
		for _, e := range evs {
			if e.GetSeq() > lastCustomer && (isBot(e) || e.GetControllerChanged() != nil) {
				c.seen = evs[len(evs)-1].GetSeq()
				return evs
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the bot did not answer within %s; events after %d: %v", turnTimeout, c.seen, evs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readAll returns the events after those already seen.
func (c *chat) readAll() []*parleyv1.Event {
	evs := c.events(c.seen)
	if len(evs) > 0 {
		c.seen = evs[len(evs)-1].GetSeq()
	}
	return evs
}

// events lists the log after seq.
func (c *chat) events(after int64) []*parleyv1.Event {
	c.t.Helper()
	var out []*parleyv1.Event
	token := ""
	for {
		resp, err := c.client.Messaging.ListEvents(c.ctx, &parleyv1.ListEventsRequest{ConversationId: c.id, PageSize: 500, PageToken: token})
		if err != nil {
			c.t.Fatalf("list events: %v", err)
		}
		for _, e := range resp.GetEvents() {
			if e.GetSeq() > after {
				out = append(out, e)
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out
		}
	}
}

// conversation reads the chat as its customer sees it.
func (c *chat) conversation() *parleyv1.Conversation {
	c.t.Helper()
	resp, err := c.client.Session.GetConversation(c.ctx, &parleyv1.GetConversationRequest{ConversationId: c.id})
	if err != nil {
		c.t.Fatalf("get conversation: %v", err)
	}
	return resp.GetConversation()
}

func isBot(e *parleyv1.Event) bool {
	return e.GetMessagePosted() != nil && e.GetSender().GetRole() == parleyv1.ParticipantRole_PARTICIPANT_ROLE_BOT
}

func isCustomer(e *parleyv1.Event) bool {
	r := e.GetSender().GetRole()
	return e.GetMessagePosted() != nil && (r == parleyv1.ParticipantRole_PARTICIPANT_ROLE_GUEST || r == parleyv1.ParticipantRole_PARTICIPANT_ROLE_CUSTOMER)
}

// botText joins the bot's messages among evs.
func botText(evs []*parleyv1.Event) string {
	var parts []string
	for _, e := range evs {
		if isBot(e) {
			parts = append(parts, e.GetMessagePosted().GetText())
		}
	}
	return strings.Join(parts, "\n")
}

// controllerChanges lists the controller changes among evs.
func controllerChanges(evs []*parleyv1.Event) []*parleyv1.ControllerChanged {
	var out []*parleyv1.ControllerChanged
	for _, e := range evs {
		if cc := e.GetControllerChanged(); cc != nil {
			out = append(out, cc)
		}
	}
	return out
}

// queueIDs maps the demo's queue names to their ids.
func queueIDs(ctx context.Context, t *testing.T, srv *servertest.Server) map[string]string {
	t.Helper()
	resp, err := srv.Client(parley.Connect, servertest.AdminToken).Routing.ListQueues(ctx, &parleyv1.ListQueuesRequest{})
	if err != nil {
		t.Fatalf("list queues: %v", err)
	}
	out := map[string]string{}
	for _, q := range resp.GetQueues() {
		out[q.GetDisplayName()] = q.GetId()
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
