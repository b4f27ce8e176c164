package assistant_test

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// A restart in the middle of a topic loses nothing: the bot's state is in
// the store, and the next replica continues where the first stopped.
func TestControllerSurvivesRestartMidTopic(t *testing.T) {
	ctx := testContext(t)
	file := filepath.Join(t.TempDir(), "parley.db")
	first := servertest.Start(t, servertest.WithDBFile(file))
	c, _ := startGuest(ctx, t, first, "billing", "I was overcharged and want to dispute it")
	c.say("order 10001")
	first.Stop()

	second := servertest.Start(t, servertest.WithDBFile(file))
	c.client = reconnect(second, c)
	evs := c.say("the amount was 45.99")
	ccs := controllerChanges(evs)
	if len(ccs) != 1 || ccs[0].GetController() != parleyv1.Controller_CONTROLLER_PENDING_AGENT {
		t.Fatalf("after the restart the topic did not finish: controller changes %v, bot said %q", ccs, botText(evs))
	}
	in := c.conversation().GetInteraction()
	if in.GetSlots()["order_number"] != "10001" || !strings.HasPrefix(in.GetSlots()["amount"], "45.99") {
		t.Fatalf("slots after the restart = %v", in.GetSlots())
	}
}

// A customer message written by a replica that died before answering it
// is answered by the next replica, once.
func TestPendingTurnAnsweredAfterCrash(t *testing.T) {
	ctx := testContext(t)
	file := filepath.Join(t.TempDir(), "parley.db")
	mute := servertest.Start(t, servertest.WithDBFile(file), servertest.WithAppOptions(app.Options{NoBotRunner: true}))
	c, _ := startGuest(ctx, t, mute, "order", "")
	sent := c.send("where is my order 10001?")
	for _, e := range c.events(sent.GetSeq()) {
		if isBot(e) {
			t.Fatalf("the replica without a runner answered: %v", e)
		}
	}
	mute.Stop()

	next := servertest.Start(t, servertest.WithDBFile(file))
	c.client = reconnect(next, c)
	c.seen = sent.GetSeq()
	evs := c.awaitTurn()
	if !strings.Contains(strings.ToLower(botText(evs)), "shipped") {
		t.Fatalf("the pending turn's answer = %q", botText(evs))
	}
	answers := countAnswers(c.events(0), "shipped")
	if answers[sent.GetSeq()] != 1 {
		t.Fatalf("message %d answered %d times", sent.GetSeq(), answers[sent.GetSeq()])
	}
}

// Several replicas, each running its turn runner with a lease so short
// that they race for every turn, answer every message exactly once.
func TestTurnsAnsweredExactlyOnceAcrossReplicas(t *testing.T) {
	ctx := testContext(t)
	file := filepath.Join(t.TempDir(), "parley.db")
	opts := servertest.WithAppOptions(app.Options{BotLease: time.Nanosecond, BotPollEvery: 5 * time.Millisecond})
	var replicas []*servertest.Server
	for range 3 {
		replicas = append(replicas, servertest.Start(t, servertest.WithDBFile(file), opts))
	}
	const chats, messages = 4, 4
	var wg sync.WaitGroup
	for i := range chats {
		wg.Go(func() {
			srv := replicas[i%len(replicas)]
			c, _ := startGuest(ctx, t, srv, "order", "")
			for m := range messages {
				// Each goes to another replica than the last.
				c.client = reconnect(replicas[(i+m)%len(replicas)], c)
				c.say("where is my order 10001?")
			}
			evs := c.events(0)
			answers := countAnswers(evs, "shipped")
			if len(answers) != messages {
				t.Errorf("chat %d: %d customer messages, want %d", i, len(answers), messages)
			}
			for seq, n := range answers {
				if n != 1 {
					t.Errorf("chat %d: message %d answered %d times", i, seq, n)
				}
			}
		})
	}
	wg.Wait()
}

// countAnswers counts, for each customer message, the bot messages that
// mention marker before the next customer message: 1 for a message
// answered once.
func countAnswers(evs []*parleyv1.Event, marker string) map[int64]int {
	out := map[int64]int{}
	var last int64
	for _, e := range evs {
		switch {
		case isCustomer(e):
			last = e.GetSeq()
			out[last] += 0
		case isBot(e) && last > 0 && strings.Contains(strings.ToLower(e.GetMessagePosted().GetText()), marker):
			out[last]++
		}
	}
	return out
}

// reconnect is c's customer calling srv (another replica) instead.
func reconnect(srv *servertest.Server, c *chat) *parley.Client {
	return srv.Client(parley.Connect, c.token)
}
