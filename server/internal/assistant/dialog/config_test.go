package dialog

import (
	"strings"
	"testing"
)

// minimal is a small valid configuration; the table below breaks it one
// way at a time.
const minimal = `
language: en
languages:
  en:
    handoff: [agent]
greeting: Hi
fallback: Sorry?
handoff_message: One moment.
topics:
  - id: order_status
    name: Order status
    triggers: [where is my order]
    slots:
      - name: order_number
        prompt: Which order?
        pattern: '(\d+)'
    steps:
      - ask: order_number
      - call: lookup_order
      - say: "{{order_number}} is {{lookup_order.status}}"
`

func TestParseMinimal(t *testing.T) {
	c, err := Parse([]byte(minimal), []string{"lookup_order"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Greeting(); got != "Hi" {
		t.Errorf("Greeting = %q", got)
	}
	info, ok := c.Topic("order_status")
	if !ok || info.Name != "Order status" || len(info.Slots) != 1 || info.Slots[0] != "order_number" {
		t.Errorf("Topic = %+v, %v", info, ok)
	}
	if len(c.Topics()) != 1 {
		t.Errorf("Topics = %+v", c.Topics())
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		want           []string
	}{
		{"unknown key", "greeting: Hi", "greting: Hi", []string{"line 6", "greting"}},
		{"unknown slot key", "        prompt: Which order?", "        promt: Which order?", []string{"line 15", "promt"}},
		{"bad regexp", `pattern: '(\d+)'`, `pattern: '(\d+'`, []string{"line 16", `slot "order_number"`, "bad pattern"}},
		{"unknown slot in ask", "- ask: order_number", "- ask: order_id", []string{"line 18", `topic "order_status" steps[0]`, `unknown slot "order_id"`}},
		{"unknown action", "- call: lookup_order", "- call: find_order", []string{"line 19", `topic "order_status" steps[1]`, `unknown action "find_order"`}},
		{"unknown slot placeholder", "{{order_number}} is", "{{order_no}} is", []string{"line 20", "steps[2]", "unknown placeholder {{order_no}}"}},
		{"unknown action placeholder", "{{lookup_order.status}}", "{{track.status}}", []string{"line 20", "{{track.status}}", `no action "track"`}},
		{"malformed placeholder", "{{lookup_order.status}}", "{{lookup_order.status}", []string{"line 20", "malformed placeholder"}},
		{"bad topic id", "- id: order_status", "- id: Order-Status", []string{"line 10", `topic id "Order-Status"`}},
		{"duplicate topic", "topics:\n", "topics:\n  - {id: order_status, name: X, triggers: [x], steps: [{say: hi}]}\n", []string{"line 11", `topic "order_status": duplicate topic id`}},
		{"thresholds out of order", "topics:\n", "thresholds: {start: 0.3, suggest: 0.6}\ntopics:\n", []string{"line 9", "thresholds", "suggest 0.6, start 0.3"}},
		{"threshold above one", "topics:\n", "thresholds: {start: 1.5}\ntopics:\n", []string{"thresholds", "start 1.5"}},
		{"two kinds in a step", "- ask: order_number", "- {ask: order_number, say: hi}", []string{"line 18", "exactly one of"}},
		{"pattern and choices", `pattern: '(\d+)'`, `pattern: '(\d+)'` + "\n        choices: [a]", []string{"line 14", "exactly one of pattern and choices"}},
		{"bad on_fail", `pattern: '(\d+)'`, `pattern: '(\d+)'` + "\n        on_fail: explode", []string{"line 17", `on_fail "explode"`}},
		{"bad normalize", `pattern: '(\d+)'`, `pattern: '(\d+)'` + "\n        normalize: camel", []string{"line 17", `normalize "camel"`}},
		{"bad handoff reason", "- say: \"{{order", "- handoff: {reason: bored}\n      - say: \"{{order", []string{"line 20", `handoff reason "bored"`}},
		{"unknown handoff key", "- say: \"{{order", "- handoff: {queue: Billing, reson: topic}\n      - say: \"{{order", []string{"line 20", "reson"}},
		{"no hand-off phrases", "    handoff: [agent]", "    \"yes\": [yep]", []string{"no hand-off phrases"}},
		{"yes label without words", "greeting: Hi\n", "greeting: Hi\nmessages: {yes_label: \"!!\"}\n", []string{"line 7", `yes_label "!!" has no words`}},
		{"missing greeting", "greeting: Hi\n", "", []string{"greeting is required"}},
		{"branch on unknown slot", "- say: \"{{order", "- branch: {slot: colour, cases: {red: [{say: hi}]}}\n      - say: \"{{order", []string{"line 20", `unknown slot "colour"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(minimal, tc.old) {
				t.Fatalf("test case: %q is not in the minimal config", tc.old)
			}
			_, err := Parse([]byte(strings.Replace(minimal, tc.old, tc.new, 1)), []string{"lookup_order"})
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestParseDemoNeedsItsAction(t *testing.T) {
	if _, err := Parse(demoText(), nil); err == nil || !strings.Contains(err.Error(), `unknown action "lookup_order"`) {
		t.Errorf("Parse(demo, no actions) = %v, want unknown action lookup_order", err)
	}
}

func TestParseBranchCaseMustBeAChoice(t *testing.T) {
	text := strings.Replace(string(demoText()), "            wrong item:", "            broken item:", 1)
	if _, err := Parse([]byte(text), demoActions); err == nil || !strings.Contains(err.Error(), `branch case "broken item" is not a choice of slot "reason"`) {
		t.Errorf("Parse = %v", err)
	}
}
