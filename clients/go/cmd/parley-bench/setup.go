package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
)

// What the setup relies on in the demo bootstrap
// (server/internal/bootstrap/demo.yaml).
const (
	demoAdminToken = "ps_demo_admin_token"
	// benchIssueType is the pre-chat form's issue type of every guest;
	// the demo's rules route it to benchQueue.
	benchIssueType = "billing"
	benchQueue     = "Billing Support"
	// chatsPerAgent is each bench agent's capacity: with one agent stream
	// per conversation, an agent holds this many streams, within parleyd's
	// default -max-streams-per-caller (16).
	chatsPerAgent = 10
	// setupParallel bounds the setup calls in flight.
	setupParallel = 8
	// assignTimeout bounds how long setup waits for routing to give every
	// conversation to a bench agent.
	assignTimeout = 2 * time.Minute
	// callTimeout bounds every unary call.
	callTimeout = 30 * time.Second
)

// conversation is one conversation the bench sends to and follows.
type conversation struct {
	id string
	// lastSeq is the conversation's last seq when setup ended: subscribers
	// start from lastSeq-1, so the first event they get proves that they
	// follow the log.
	lastSeq int64
	// senderToken is its guest's token; subTokens holds the token of each
	// subscriber (the agent holding it, then its guest on every other).
	senderToken string
	subTokens   []string
}

// fixture is what setup made on a target.
type fixture struct {
	convs []*conversation
	// cleanup undoes what setup changed (closes the conversations, sets the
	// agents offline, restores the settings).
	cleanup func(context.Context) error
}

// bareFixture names n conversations on the bare server, which needs no
// setup and no tokens.
func bareFixture(n, subscribers int) *fixture {
	f := &fixture{cleanup: func(context.Context) error { return nil }}
	for range n {
		f.convs = append(f.convs, &conversation{id: uuid.NewString(), subTokens: make([]string, subscribers)})
	}
	return f
}

// parleySetup prepares n conversations on the Parley server at url, through
// the public API, as the demo walk-through does:
//
//  1. The admin lifts the guest session limits (UpdateSettings), which
//     allow 100 guests an hour and 20 per address in the demo.
//  2. The admin creates ceil(n/10) agents in the Billing Support queue with
//     a capacity of 10 chats each (CreateAgent returns each one's token);
//     each agent sets itself available and watches its work stream
//     (WatchWork), accepting every offer.
//  3. n guests start chats (StartGuestChat, issue type billing), which
//     routing offers to the bench agents, who accept them.
//
// Once every conversation is assigned, its guest sends, and its
// subscribers follow it with the agent's token (one stream) and the guest's
// (the others): a customer on several devices and the agent holding the
// chat.
func parleySetup(ctx context.Context, url, adminToken string, n, subscribers int, log io.Writer) (*fixture, error) {
	admin := parley.New(url, parley.WithToken(adminToken))
	restore, err := liftGuestLimits(ctx, admin)
	if err != nil {
		return nil, err
	}
	queueID, err := findQueue(ctx, admin, benchQueue)
	if err != nil {
		return nil, errors.Join(err, restore(ctx))
	}
	watchCtx, stopWatching := context.WithCancel(context.WithoutCancel(ctx))
	team := &agents{assigned: map[string]string{}}
	var watchers sync.WaitGroup
	f := &fixture{}
	f.cleanup = func(ctx context.Context) error {
		err := closeAll(ctx, admin, f.convs)
		err = errors.Join(err, team.offline(ctx))
		stopWatching()
		watchers.Wait()
		return errors.Join(err, restore(ctx))
	}
	fail := func(err error) (*fixture, error) {
		return nil, errors.Join(err, f.cleanup(context.WithoutCancel(ctx)))
	}
	if err := team.hire(ctx, admin, url, queueID, (n+chatsPerAgent-1)/chatsPerAgent); err != nil {
		return fail(err)
	}
	for _, a := range team.members {
		watchers.Go(func() { team.watch(watchCtx, a, log) })
	}
	if f.convs, err = startGuests(ctx, url, n); err != nil {
		return fail(err)
	}
	if err := team.wait(ctx, f.convs); err != nil {
		return fail(err)
	}
	if err := readLastSeqs(ctx, url, f.convs); err != nil {
		return fail(err)
	}
	for _, c := range f.convs {
		c.subTokens = make([]string, subscribers)
		for i := range c.subTokens {
			c.subTokens[i] = c.senderToken
		}
		c.subTokens[0] = team.tokenOf(c.id)
	}
	return f, nil
}

// liftGuestLimits raises the guest session limits far beyond what a run
// starts, and returns how to put the settings back.
func liftGuestLimits(ctx context.Context, admin *parley.Client) (func(context.Context) error, error) {
	got, err := admin.Session.GetSettings(ctx, &parleyv1.GetSettingsRequest{})
	if err != nil {
		return nil, fmt.Errorf("read settings (is %q an admin token?): %w", demoAdminToken, err)
	}
	saved := got.GetSettings()
	lifted := proto.CloneOf(saved)
	lifted.MaxGuestSessionsPerHour = 1_000_000
	lifted.MaxGuestSessionsPerHourPerAddress = 0 // no limit
	if _, err := admin.Session.UpdateSettings(ctx, &parleyv1.UpdateSettingsRequest{Settings: lifted}); err != nil {
		return nil, fmt.Errorf("lift the guest session limits: %w", err)
	}
	return func(ctx context.Context) error {
		if _, err := admin.Session.UpdateSettings(ctx, &parleyv1.UpdateSettingsRequest{Settings: saved}); err != nil {
			return fmt.Errorf("restore the settings: %w", err)
		}
		return nil
	}, nil
}

// findQueue returns the id of the queue named name.
func findQueue(ctx context.Context, admin *parley.Client, name string) (string, error) {
	req := &parleyv1.ListQueuesRequest{PageSize: 100}
	for {
		resp, err := admin.Routing.ListQueues(ctx, req)
		if err != nil {
			return "", fmt.Errorf("list queues: %w", err)
		}
		for _, q := range resp.GetQueues() {
			if q.GetDisplayName() == name {
				return q.GetId(), nil
			}
		}
		if resp.GetNextPageToken() == "" {
			return "", fmt.Errorf("no queue named %q: the bench needs the demo bootstrap's queues", name)
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// startGuests starts n guest chats, setupParallel at a time.
func startGuests(ctx context.Context, url string, n int) ([]*conversation, error) {
	convs := make([]*conversation, n)
	anon := parley.New(url)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(setupParallel)
	for i := range convs {
		g.Go(func() error {
			callCtx, cancel := context.WithTimeout(gctx, callTimeout)
			defer cancel()
			resp, err := anon.Session.StartGuestChat(callCtx, &parleyv1.StartGuestChatRequest{
				RequestId: uuid.NewString(), Name: fmt.Sprintf("Bench guest %d", i),
				Email: fmt.Sprintf("guest%d@example.com", i), IssueType: benchIssueType,
			})
			if err != nil {
				return fmt.Errorf("start guest chat %d: %w", i, err)
			}
			convs[i] = &conversation{id: resp.GetConversation().GetId(), senderToken: resp.GetGuestToken()}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return convs, nil
}

// readLastSeqs reads each conversation's last seq as its guest.
func readLastSeqs(ctx context.Context, url string, convs []*conversation) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(setupParallel)
	for _, c := range convs {
		g.Go(func() error {
			callCtx, cancel := context.WithTimeout(gctx, callTimeout)
			defer cancel()
			guest := parley.New(url, parley.WithToken(c.senderToken))
			resp, err := guest.Session.GetConversation(callCtx, &parleyv1.GetConversationRequest{ConversationId: c.id})
			if err != nil {
				return fmt.Errorf("read conversation %s: %w", c.id, err)
			}
			c.lastSeq = resp.GetConversation().GetLastSeq()
			return nil
		})
	}
	return g.Wait()
}

// closeAll closes the conversations as the admin.
func closeAll(ctx context.Context, admin *parley.Client, convs []*conversation) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(setupParallel)
	for _, c := range convs {
		g.Go(func() error {
			callCtx, cancel := context.WithTimeout(gctx, callTimeout)
			defer cancel()
			if _, err := admin.Session.CloseConversation(callCtx, &parleyv1.CloseConversationRequest{ConversationId: c.id, Reason: "parley-bench done"}); err != nil {
				return fmt.Errorf("close conversation %s: %w", c.id, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// agents are the bench's agents and the conversations they hold.
type agents struct {
	members []*agent

	mu       sync.Mutex
	assigned map[string]string // conversation id -> the holding agent's token
}

// agent is one bench agent.
type agent struct {
	token  string
	client *parley.Client
}

// hire creates count agents in queueID and makes them available.
func (t *agents) hire(ctx context.Context, admin *parley.Client, url, queueID string, count int) error {
	run := uuid.NewString()[:8]
	for i := range count {
		resp, err := admin.Routing.CreateAgent(ctx, &parleyv1.CreateAgentRequest{
			DisplayName: fmt.Sprintf("Bench %s agent %d", run, i), Capacity: chatsPerAgent, QueueIds: []string{queueID},
		})
		if err != nil {
			return fmt.Errorf("create agent %d: %w", i, err)
		}
		a := &agent{token: resp.GetToken(), client: parley.New(url, parley.WithToken(resp.GetToken()))}
		t.members = append(t.members, a)
		if _, err := a.client.Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AVAILABLE}); err != nil {
			return fmt.Errorf("make agent %d available: %w", i, err)
		}
	}
	return nil
}

// watch follows a's work stream until ctx ends, accepting every offer and
// recording every assignment, and opens it again (after a second) whenever
// it ends, as an agent's client does: an open stream keeps the agent's
// lease, and with it the agent's chats.
func (t *agents) watch(ctx context.Context, a *agent, log io.Writer) {
	for {
		err := t.watchOnce(ctx, a)
		if ctx.Err() != nil {
			return
		}
		fmt.Fprintf(log, "agent work stream ended, opening it again: %v\n", err)
		sleepUntil(ctx, time.Now().Add(time.Second))
	}
}

// watchOnce follows one work stream of a until it ends.
func (t *agents) watchOnce(ctx context.Context, a *agent) error {
	stream, err := a.client.Routing.WatchWork(ctx, &parleyv1.WatchWorkRequest{})
	if err != nil {
		return err
	}
	defer stream.Close()
	for {
		resp, err := stream.Receive()
		if err != nil {
			return err
		}
		if offer := resp.GetOffer(); offer != nil {
			callCtx, cancel := context.WithTimeout(ctx, callTimeout)
			_, err := a.client.Routing.AcceptOffer(callCtx, &parleyv1.AcceptOfferRequest{OfferId: offer.GetId()})
			cancel()
			if err != nil {
				return fmt.Errorf("accept offer %s: %w", offer.GetId(), err)
			}
		}
		if conv := resp.GetAssigned(); conv != nil {
			t.mu.Lock()
			t.assigned[conv.GetId()] = a.token
			t.mu.Unlock()
		}
	}
}

// wait returns once every one of convs is assigned to a bench agent.
func (t *agents) wait(ctx context.Context, convs []*conversation) error {
	deadline := time.Now().Add(assignTimeout)
	for {
		held := 0
		t.mu.Lock()
		for _, c := range convs {
			if t.assigned[c.id] != "" {
				held++
			}
		}
		t.mu.Unlock()
		switch {
		case held == len(convs):
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("routing assigned %d of %d conversations to the bench agents within %s", held, len(convs), assignTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tokenOf returns the token of the agent holding conversation id.
func (t *agents) tokenOf(id string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.assigned[id]
}

// offline sets every bench agent offline.
func (t *agents) offline(ctx context.Context) error {
	var errs []error
	for i, a := range t.members {
		if _, err := a.client.Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_OFFLINE}); err != nil {
			errs = append(errs, fmt.Errorf("set agent %d offline: %w", i, err))
		}
	}
	return errors.Join(errs...)
}
