package dialog

import (
	"context"
	"encoding/json"
	"testing"
)

// FuzzTurn: no message, in any state the demo bot can be in, makes a turn
// panic, fail, or say nothing.
func FuzzTurn(f *testing.F) {
	for _, s := range []string{"where is order 12345", "AGENT!!!", "", "??", "$40.50", "2", "yes", "no", "je veux parler à un conseiller", "\xff\xfe{{order_number}}"} {
		f.Add(s, "en", uint8(0))
		f.Add(s, "fr-CA", uint8(3))
	}
	c := demoConfig(f)
	// The states a chat reaches: idle, asking order_status and
	// billing_dispute slots, the return reason, "Did you mean", "Did that
	// answer".
	var states []State
	for _, opener := range []string{"", "where's my order", "I was charged twice", "I'd like to return these shoes", bandMessage, "tell me a joke"} {
		var st State
		if opener != "" {
			if _, err := c.Turn(context.Background(), &fakeEnv{articles: []Article{resetArticle}}, &st, Input{Text: opener}); err != nil {
				f.Fatal(err)
			}
		}
		states = append(states, st)
	}
	f.Fuzz(func(t *testing.T, text, lang string, which uint8) {
		data, _ := json.Marshal(states[int(which)%len(states)])
		var st State
		if err := json.Unmarshal(data, &st); err != nil {
			t.Fatal(err)
		}
		r, err := c.Turn(context.Background(), &fakeEnv{articles: []Article{resetArticle}}, &st, Input{Text: text, Language: lang})
		if err != nil {
			t.Fatalf("Turn(%q): %v", text, err)
		}
		if len(r.Messages) == 0 {
			t.Fatalf("Turn(%q): no message", text)
		}
	})
}

// FuzzParse: no configuration text makes Parse panic, and whatever it
// accepts answers a turn.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add(demoText())
	f.Add([]byte("topics: [{id: a, name: A, triggers: [x], steps: [{branch: {slot: s, cases: {}}}]}]"))
	f.Fuzz(func(t *testing.T, text []byte) {
		c, err := Parse(text, demoActions)
		if err != nil {
			return
		}
		var st State
		r, err := c.Turn(context.Background(), &fakeEnv{}, &st, Input{Text: "where is order 12345"})
		if err != nil || len(r.Messages) == 0 {
			t.Fatalf("Turn: %v, %d messages", err, len(r.Messages))
		}
	})
}
