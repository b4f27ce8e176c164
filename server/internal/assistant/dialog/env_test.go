package dialog

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/parleyhq/parley/server/internal/bootstrap"
)

// demoActions are the actions the turn runner registers for the demo.
var demoActions = []string{"lookup_order"}

func demoText() []byte { return bootstrap.DemoBotConfig() }

func demoConfig(t testing.TB) *Config {
	t.Helper()
	c, err := Parse(demoText(), demoActions)
	if err != nil {
		t.Fatalf("Parse(demo): %v", err)
	}
	return c
}

// fakeEnv returns fixed articles and knows one order; it records what the
// engine asked for.
type fakeEnv struct {
	articles  []Article
	searchErr error
	searches  []string
	calls     []fakeCall
}

type fakeCall struct {
	action string
	slots  map[string]string
}

func (e *fakeEnv) Search(_ context.Context, text, _ string, limit int) ([]Article, error) {
	e.searches = append(e.searches, text)
	if e.searchErr != nil {
		return nil, e.searchErr
	}
	return e.articles[:min(limit, len(e.articles))], nil
}

func (e *fakeEnv) Call(_ context.Context, action string, slots map[string]string) (map[string]string, error) {
	e.calls = append(e.calls, fakeCall{action, maps.Clone(slots)})
	if action == "lookup_order" && slots["order_number"] == "12345" {
		return map[string]string{"status": "shipped", "eta": "on Friday", "carrier": "UPS", "tracking": "1Z999"}, nil
	}
	return nil, fmt.Errorf("no order %s", slots["order_number"])
}

var resetArticle = Article{ID: "a1", ExternalID: "account/reset-password", Title: "Reset your password", Snippet: "Use Forgot password on the sign-in page."}
