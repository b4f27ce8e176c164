package dialog

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
)

// chat runs messages through one conversation, saving and restoring the
// State as JSON between turns as the runner does (a restart may happen
// between any two), and returns every reply.
type chat struct {
	t   *testing.T
	c   *Config
	env *fakeEnv
	st  State
}

func newChat(t *testing.T, env *fakeEnv) *chat {
	if env == nil {
		env = &fakeEnv{articles: []Article{resetArticle}}
	}
	return &chat{t: t, c: demoConfig(t), env: env}
}

func (h *chat) say(text string) Reply {
	h.t.Helper()
	r, err := h.c.Turn(context.Background(), h.env, &h.st, Input{Text: text})
	if err != nil {
		h.t.Fatalf("Turn(%q): %v", text, err)
	}
	if len(r.Messages) == 0 {
		h.t.Fatalf("Turn(%q): no message", text)
	}
	data, err := json.Marshal(h.st)
	if err != nil {
		h.t.Fatal(err)
	}
	var restored State
	if err := json.Unmarshal(data, &restored); err != nil {
		h.t.Fatal(err)
	}
	h.st = restored
	return r
}

func texts(r Reply) string {
	var out []string
	for _, m := range r.Messages {
		out = append(out, m.Text)
	}
	return strings.Join(out, " | ")
}

func wantText(t *testing.T, r Reply, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(texts(r), p) {
			t.Errorf("reply %q does not contain %q", texts(r), p)
		}
	}
}

func wantHandoff(t *testing.T, r Reply, reason, queue string) {
	t.Helper()
	if r.Handoff == nil {
		t.Fatalf("no hand-off; reply %q", texts(r))
	}
	if r.Handoff.Reason != reason || r.Handoff.Queue != queue {
		t.Errorf("hand-off %+v, want reason %s queue %q", *r.Handoff, reason, queue)
	}
}

func wantNoHandoff(t *testing.T, r Reply) {
	t.Helper()
	if r.Handoff != nil {
		t.Fatalf("hand-off %+v; reply %q", *r.Handoff, texts(r))
	}
}

func TestOrderStatusOverTwoMessages(t *testing.T) {
	h := newChat(t, nil)
	r := h.say("hi, where's my order??")
	wantNoHandoff(t, r)
	wantText(t, r, "What is your order number?")
	if r.Intent != "order_status" || len(h.env.calls) != 0 {
		t.Fatalf("intent %q, calls %v", r.Intent, h.env.calls)
	}
	r = h.say("sure it's 12345")
	wantNoHandoff(t, r)
	wantText(t, r, "Order 12345 is shipped, expected on Friday", "UPS", "1Z999", "anything else")
	if len(h.env.calls) != 1 || h.env.calls[0].action != "lookup_order" || h.env.calls[0].slots["order_number"] != "12345" {
		t.Errorf("calls %+v", h.env.calls)
	}
	if r.Intent != "order_status" || r.Slots["order_number"] != "12345" {
		t.Errorf("intent %q slots %v", r.Intent, r.Slots)
	}
	if h.st.Topic != "" || h.st.Await != awaitMore {
		t.Errorf("state after the topic: %+v", h.st)
	}
	got := h.c.Captured(&h.st)
	if got.TopicID != "order_status" || len(got.Missing) != 0 || len(got.Actions) != 1 || got.Actions[0].Values["status"] != "shipped" {
		t.Errorf("Captured = %+v", got)
	}
}

func TestProgressiveCapture(t *testing.T) {
	h := newChat(t, nil)
	r := h.say("where is order 12345")
	wantText(t, r, "Order 12345 is shipped")
	if strings.Contains(texts(r), "What is your order number?") {
		t.Errorf("asked again: %q", texts(r))
	}
	// A new run of the topic does not reuse the old number.
	r = h.say("and where's my other order?")
	wantText(t, r, "What is your order number?")
}

func TestSlotRetriesThenHandoff(t *testing.T) {
	h := newChat(t, nil)
	h.say("track order")
	r := h.say("I don't have it")
	wantNoHandoff(t, r)
	wantText(t, r, "Sorry, I didn't catch that. Sure, I can check that.")
	r = h.say("hmm it's on the email somewhere")
	wantNoHandoff(t, r)
	r = h.say("no idea")
	wantHandoff(t, r, ReasonBotFailed, "")
	if got := h.c.Captured(&h.st); !slices.Equal(got.Missing, []string{"order_number"}) {
		t.Errorf("Missing = %v", got.Missing)
	}
}

func TestSlotOnFail(t *testing.T) {
	for _, tc := range []struct {
		onFail string
		want   string
	}{
		{"skip", ""},
		{"end", "Anything else?"},
	} {
		t.Run(tc.onFail, func(t *testing.T) {
			text := strings.Replace(minimal, `pattern: '(\d+)'`, `pattern: '(\d+)'`+"\n        retries: 0\n        on_fail: "+tc.onFail, 1)
			text = strings.Replace(text, "greeting: Hi", "greeting: Hi\nmessages: {anything_else: \"Anything else?\"}", 1)
			c, err := Parse([]byte(text), []string{"lookup_order"})
			if err != nil {
				t.Fatal(err)
			}
			env := &fakeEnv{}
			var st State
			if _, err := c.Turn(context.Background(), env, &st, Input{Text: "where is my order"}); err != nil {
				t.Fatal(err)
			}
			r, err := c.Turn(context.Background(), env, &st, Input{Text: "no clue"})
			if err != nil {
				t.Fatal(err)
			}
			if tc.onFail == "skip" {
				// The topic goes on without the slot; the action fails
				// without an order, and with no on_error that hands off.
				if len(env.calls) != 1 || env.calls[0].slots["order_number"] != "" {
					t.Errorf("calls %v", env.calls)
				}
				wantHandoff(t, r, ReasonTopic, "")
				return
			}
			wantNoHandoff(t, r)
			wantText(t, r, tc.want)
			if len(env.calls) != 0 || st.Topic != "" {
				t.Errorf("calls %v, state %+v", env.calls, st)
			}
		})
	}
}

func TestUnknownOrderHandsOffToOrders(t *testing.T) {
	h := newChat(t, nil)
	r := h.say("has order 99999 shipped yet")
	wantText(t, r, "I couldn't find order 99999")
	wantHandoff(t, r, ReasonTopic, "Order Support")
	got := h.c.Captured(&h.st)
	if len(got.Actions) != 1 || got.Actions[0].Name != "lookup_order" || got.Actions[0].Error != "no order 99999" {
		t.Errorf("Captured actions = %+v", got.Actions)
	}
}

func TestBillingDisputeCollectsThenHandsOff(t *testing.T) {
	h := newChat(t, nil)
	r := h.say("I got charged twice for the same order")
	wantText(t, r, "Which order is the charge for?")
	if r.Intent != "billing_dispute" {
		t.Fatalf("intent %q", r.Intent)
	}
	r = h.say("it was order #12345")
	wantNoHandoff(t, r)
	wantText(t, r, "How much were you charged")
	r = h.say("$40.50")
	wantHandoff(t, r, ReasonTopic, "Billing Support")
	want := map[string]string{"order_number": "12345", "amount": "40.50"}
	if !maps.Equal(r.Slots, want) {
		t.Errorf("Slots = %v, want %v", r.Slots, want)
	}
	if r.Handoff.Note != "Disputed charge of 40.50 on order 12345." {
		t.Errorf("Note = %q", r.Handoff.Note)
	}
}

func TestBillingDisputeCapturesBothFromOneMessage(t *testing.T) {
	h := newChat(t, nil)
	r := h.say("I want to dispute a charge of $49.99 on order 77812")
	wantHandoff(t, r, ReasonTopic, "Billing Support")
	if r.Slots["order_number"] != "77812" || r.Slots["amount"] != "49.99" {
		t.Errorf("Slots = %v", r.Slots)
	}
}

func TestAskForPersonMidSlot(t *testing.T) {
	h := newChat(t, nil)
	h.say("I was charged the wrong amount")
	r := h.say("can I just talk to a person")
	wantHandoff(t, r, ReasonCustomerAsked, "")
	wantText(t, r, "connecting you with a member of our team")
	got := h.c.Captured(&h.st)
	if got.TopicID != "billing_dispute" || !slices.Equal(got.Missing, []string{"order_number", "amount"}) {
		t.Errorf("Captured = %+v", got)
	}
}

func TestTopicSwitchMidSlot(t *testing.T) {
	h := newChat(t, nil)
	h.say("where's my order")
	r := h.say("actually I'd like to return these shoes")
	wantNoHandoff(t, r)
	if r.Intent != "return_item" || h.st.Topic != "return_item" {
		t.Fatalf("intent %q topic %q", r.Intent, h.st.Topic)
	}
	if got := r.Messages[len(r.Messages)-1].SuggestedReplies; len(got) != 4 {
		t.Errorf("choices %v", got)
	}
	r = h.say("2")
	wantText(t, r, "wrong item", "Here is what I found")
	if h.st.Slots["reason"] != "wrong item" {
		t.Errorf("reason %q", h.st.Slots["reason"])
	}
}

func TestReturnReasonFromFirstMessage(t *testing.T) {
	h := newChat(t, nil)
	r := h.say("The blender arrived damaged, I want to send it back")
	wantText(t, r, "arrived damaged")
	if len(h.env.searches) != 1 || h.env.searches[0] != "start a return" {
		t.Errorf("searches %q", h.env.searches)
	}
}

func TestPasswordResetFromKnowledge(t *testing.T) {
	h := newChat(t, nil)
	r := h.say("i forgot my pasword")
	if r.Intent != "password_reset" || len(h.env.searches) != 1 || h.env.searches[0] != "reset password" {
		t.Fatalf("intent %q searches %q", r.Intent, h.env.searches)
	}
	if len(r.Messages[0].Articles) != 1 || r.Messages[0].Articles[0].ExternalID != "account/reset-password" {
		t.Errorf("articles %+v", r.Messages[0].Articles)
	}
	wantText(t, r, "Reset your password: Use Forgot password")
	if got := h.c.Captured(&h.st).Articles; len(got) != 1 || got[0].Snippet != "" {
		t.Errorf("articles remembered %+v", got)
	}
}

const bandMessage = "It's been two weeks and my order hasn't shown up. What is going on?!"

func TestDidYouMean(t *testing.T) {
	t.Run("yes", func(t *testing.T) {
		h := newChat(t, nil)
		r := h.say(bandMessage)
		wantText(t, r, "Did you mean: Check an order's status?")
		if got := r.Messages[0].SuggestedReplies; !slices.Equal(got, []string{"Yes", "No"}) {
			t.Errorf("suggested replies %v", got)
		}
		if r.Intent != "" {
			t.Errorf("intent %q before the yes", r.Intent)
		}
		r = h.say("Yes")
		wantText(t, r, "What is your order number?")
		if r.Intent != "order_status" {
			t.Errorf("intent %q", r.Intent)
		}
	})
	t.Run("no searches knowledge", func(t *testing.T) {
		h := newChat(t, nil)
		h.say(bandMessage)
		r := h.say("no")
		wantText(t, r, "Here is what I found", "Did that answer your question?")
		if r.Intent != "" || len(h.env.searches) != 1 || h.env.searches[0] != bandMessage {
			t.Errorf("intent %q searches %q", r.Intent, h.env.searches)
		}
	})
	t.Run("no with a new request starts it", func(t *testing.T) {
		h := newChat(t, nil)
		h.say(bandMessage)
		r := h.say("no, I need to cancel my order")
		if r.Intent != "cancel_order" || len(h.env.searches) != 0 {
			t.Errorf("intent %q searches %q", r.Intent, h.env.searches)
		}
	})
	t.Run("something else is taken afresh", func(t *testing.T) {
		h := newChat(t, nil)
		h.say(bandMessage)
		r := h.say("how do I reset my password?")
		if r.Intent != "password_reset" {
			t.Errorf("intent %q", r.Intent)
		}
	})
}

func TestKnowledgeFallback(t *testing.T) {
	h := newChat(t, nil)
	r := h.say("What's the weather like today?")
	wantNoHandoff(t, r)
	if len(r.Messages) != 2 || len(r.Messages[0].Articles) != 1 || r.Messages[1].Text != "Did that answer your question?" {
		t.Fatalf("messages %+v", r.Messages)
	}
	r = h.say("no")
	wantText(t, r, "Sorry about that. Could you tell me a bit more")
	if h.st.Failures != 1 {
		t.Errorf("failures %d", h.st.Failures)
	}
	h.say("What's the weather like today?")
	r = h.say("yes thanks")
	wantText(t, r, "glad I could help")
	if h.st.Failures != 0 {
		t.Errorf("failures %d after a yes", h.st.Failures)
	}
}

func TestMaxFailuresHandsOff(t *testing.T) {
	h := newChat(t, &fakeEnv{})
	for i, text := range []string{"What's the weather like today?", "??", "tell me a joke"} {
		r := h.say(text)
		if i < 2 {
			wantNoHandoff(t, r)
			if h.st.Failures != i+1 {
				t.Errorf("after %q: failures %d", text, h.st.Failures)
			}
			continue
		}
		wantHandoff(t, r, ReasonBotFailed, "")
		if got := h.c.Captured(&h.st).Failures; got != 3 {
			t.Errorf("Captured failures %d", got)
		}
	}
}

func TestSuccessResetsFailures(t *testing.T) {
	h := newChat(t, &fakeEnv{})
	h.say("What's the weather like today?")
	h.say("tell me a joke")
	h.say("where is order 12345")
	if h.st.Failures != 0 {
		t.Fatalf("failures %d after a topic", h.st.Failures)
	}
	r := h.say("lol")
	wantNoHandoff(t, r)
}

func TestRestartMidTopic(t *testing.T) {
	h := newChat(t, nil)
	h.say("I was charged twice")
	data, err := json.Marshal(h.st)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state: %s", data)
	// A fresh Config (another replica, or after a restart) continues.
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	c := demoConfig(t)
	r, err := c.Turn(context.Background(), h.env, &st, Input{Text: "12345"})
	if err != nil {
		t.Fatal(err)
	}
	wantText(t, r, "How much were you charged")
	if r.Slots["order_number"] != "12345" {
		t.Errorf("slots %v", r.Slots)
	}
}

func TestEnvErrors(t *testing.T) {
	c := demoConfig(t)
	t.Run("search fails politely", func(t *testing.T) {
		var st State
		r, err := c.Turn(context.Background(), &fakeEnv{searchErr: errors.New("fts down")}, &st, Input{Text: "tell me a joke"})
		if err != nil {
			t.Fatal(err)
		}
		wantText(t, r, "couldn't find anything")
	})
	t.Run("cancelled turn changes nothing", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		st := State{Failures: 1}
		_, err := c.Turn(ctx, &fakeEnv{searchErr: context.Canceled}, &st, Input{Text: "tell me a joke"})
		if err == nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		if st.Failures != 1 || st.Await != "" {
			t.Errorf("state changed: %+v", st)
		}
	})
}

func TestStaleStateStartsAfresh(t *testing.T) {
	h := newChat(t, nil)
	h.st = State{Topic: "gone_topic", PC: 7, Await: awaitSlot}
	r := h.say("where is order 12345")
	wantText(t, r, "Order 12345 is shipped")
}

func TestHandoffPhrases(t *testing.T) {
	c := demoConfig(t)
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"AGENT!!!", true},
		{"agents?", true},
		{"can I talk to a real person", true},
		{"I want to talk with the person in charge", true},
		{"get me a represntative", true},
		{"je veux parler à un conseiller", true},
		{"je veux parler a une conseillere", true},
		{"¿Puedo hablar con alguien?", true},
		// Decided: any mention of an agent hands off.
		{"I am an agent of change", true},
		{"reagent", false},
		{"my agentic workflow", false},
		{"je veux mon argent", false},
		{"a person left a note at my door", false},
		{"is this personal data safe", false},
		{"talk about my refund", false},
		{"humane society donation receipt", false},
		{"", false},
	} {
		if got := anyIn(c.handoff, normWords(tc.text)); got != tc.want {
			t.Errorf("hand-off(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

func TestWithinOne(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"password", "password", true},
		{"pasword", "password", true},
		{"passwrod", "password", true},
		{"passwords", "password", true},
		{"pssword", "passwrd", false},
		{"agent", "argent", true},
		{"agent", "reagent", false},
		{"", "a", true},
		{"ab", "ba", true},
	} {
		if got := withinOne(tc.a, tc.b); got != tc.want {
			t.Errorf("withinOne(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

// After "Anything else?", a customer who is done ("no", "no thanks",
// "thank you") is thanked, not counted as a failure; "yes" alone is asked
// what else; the summary counts every failure, not the latest run.
func TestDoneAfterAnythingElse(t *testing.T) {
	for _, done := range []string{"no", "no thanks", "thank you", "nope, that's all", "bye", "Thanks, bye", "all good", "I'm good", "nothing else"} {
		h := newChat(t, nil)
		h.say("where is my order 12345")
		r := h.say(done)
		if r.Handoff != nil || h.st.Failures != 0 || len(r.Messages) != 1 || !strings.Contains(strings.ToLower(r.Messages[0].Text), "glad") {
			t.Errorf("%q after the topic: %+v, state %+v", done, r, h.st)
		}
		for range 3 { // a customer who says goodbye three times is not handed off
			if r := h.say(done); r.Handoff != nil {
				t.Fatalf("%q: handed off: %+v", done, r)
			}
			h.say("where is my order 12345")
		}
	}
	h := newChat(t, nil)
	h.say("where is my order 12345")
	if r := h.say("yes"); len(r.Messages) != 1 || !strings.Contains(r.Messages[0].Text, "what can I help") {
		t.Errorf("yes after the topic: %+v", r)
	}
	h = newChat(t, &fakeEnv{}) // a knowledge base without answers
	h.say("blorf")
	h.say("wibble")
	h.say("where is my order 12345")
	if got := h.c.Captured(&h.st).Failures; got != 2 {
		t.Errorf("Captured.Failures = %d after two failures then a topic, want 2", got)
	}
}
