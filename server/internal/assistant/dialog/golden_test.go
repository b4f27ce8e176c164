package dialog

import (
	"bufio"
	"context"
	"os"
	"strings"
	"testing"
)

type goldenLine struct {
	line       int
	text, want string
}

func readGolden(t *testing.T) []goldenLine {
	t.Helper()
	f, err := os.Open("testdata/golden.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []goldenLine
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		text, want, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("golden.tsv:%d: no tab", n)
		}
		out = append(out, goldenLine{n, text, want})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// outcome is what a fresh chat did with one message: "handoff", the topic
// started, "suggest:<topic>" for a "Did you mean", or "none".
func outcome(t *testing.T, c *Config, text string) string {
	t.Helper()
	env := &fakeEnv{articles: []Article{resetArticle}}
	var st State
	r, err := c.Turn(context.Background(), env, &st, Input{Text: text})
	if err != nil {
		t.Fatalf("Turn(%q): %v", text, err)
	}
	switch {
	case r.Handoff != nil && r.Handoff.Reason == ReasonCustomerAsked:
		return "handoff"
	case r.Intent != "":
		return r.Intent
	case st.Await == awaitTopic:
		return "suggest:" + st.Suggested
	}
	return "none"
}

func TestGolden(t *testing.T) {
	c := demoConfig(t)
	lines := readGolden(t)
	if len(lines) < 80 {
		t.Fatalf("golden.tsv has %d lines, want at least 80", len(lines))
	}
	triggers := map[string]string{}
	for _, tp := range c.Topics() {
		for _, trig := range tp.Triggers {
			triggers[strings.Join(normWords(trig), " ")] = tp.ID
		}
	}
	var right, suggested, handoffs int
	total, correct := map[string]int{}, map[string]int{} // by kind: topic, handoff, none
	for _, g := range lines {
		if id, ok := triggers[strings.Join(normWords(g.text), " ")]; ok {
			t.Errorf("golden.tsv:%d: %q is a trigger phrase of %s: golden lines must be other phrasings", g.line, g.text, id)
		}
		if g.want != "handoff" && g.want != "none" {
			if _, ok := c.Topic(g.want); !ok {
				t.Errorf("golden.tsv:%d: unknown topic %q", g.line, g.want)
			}
		}
		got := outcome(t, c, g.text)
		kind := g.want
		if kind != "handoff" && kind != "none" {
			kind = "topic"
		}
		total[kind]++
		if got == g.want {
			correct[kind]++
		}
		switch {
		case got == g.want:
			right++
		case got == "suggest:"+g.want:
			suggested++
			t.Logf("golden.tsv:%d: %q: suggested %s, want it started", g.line, g.text, g.want)
		default:
			t.Logf("golden.tsv:%d: %q: got %s, want %s", g.line, g.text, got, g.want)
		}
		if g.want == "handoff" {
			handoffs++
			if got != "handoff" {
				t.Errorf("golden.tsv:%d: %q did not hand off (got %s)", g.line, g.text, got)
			}
		} else if got == "handoff" {
			t.Errorf("golden.tsv:%d: %q handed off, want %s", g.line, g.text, g.want)
		}
	}
	if handoffs < 25 {
		t.Errorf("golden.tsv has %d hand-off lines, want at least 25", handoffs)
	}
	acc := float64(right) / float64(len(lines))
	for _, kind := range []string{"topic", "handoff", "none"} {
		t.Logf("golden %s lines: %d/%d", kind, correct[kind], total[kind])
	}
	t.Logf("golden: %d lines, %d right (accuracy %.3f), %d more suggested the right topic (%.3f with them)",
		len(lines), right, acc, suggested, float64(right+suggested)/float64(len(lines)))
	if acc < 0.90 {
		t.Errorf("accuracy %.3f, want >= 0.90", acc)
	}
}
