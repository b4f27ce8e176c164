package bootstrap_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/store"
)

func TestDemoAppliesOnce(t *testing.T) {
	ctx := context.Background()
	db, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "parley.db"), store.SyncNormal)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	f, err := bootstrap.Parse(bootstrap.Demo)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		res, err := bootstrap.Apply(ctx, db, f)
		if err != nil || res.Applied != want || res.GeneratedAdminToken != "" {
			t.Fatalf("apply #%d: %+v err=%v, want applied=%v and no generated token", i+1, res, err, want)
		}
	}
	for name, count := range map[string]func(context.Context) (int, error){
		"queues": db.Queue.Query().Count,
		"rules":  db.MatchingRule.Query().Count,
		"agents": db.Agent.Query().Count,
		"tokens": db.Token.Query().Count,
	} {
		n, err := count(ctx)
		if err != nil || n != map[string]int{"queues": 3, "rules": 3, "agents": 3, "tokens": 4}[name] {
			t.Errorf("%s: %d (%v)", name, n, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	base := string(bootstrap.Demo)
	tests := []struct {
		name, from, to, want string
	}{
		{"unknown key", "queues:", "queuez:", "field queuez not found"},
		{"rule on a missing queue", "queue: Billing Support\n", "queue: Billing\n", `queue "Billing" is not in queues`},
		{"short token", "ps_demo_admin_token", "short", "at least 12 characters"},
		{"reused token", "ps_demo_agent_abel", "ps_demo_agent_fred", "token is used twice"},
		{"bad issue type value", "value: billing", "value: Billing Issues", "issue_types[0].value"},
		{"offer timeout too short", "offer_timeout: 30s}\n  - {name: Order", "offer_timeout: 10ms}\n  - {name: Order", "offer_timeout must be 0"},
		{"duplicate order", "order: 200", "order: 100", "already has order 100"},
		{"unknown rule field", "when: {issue_type: [order]}", "when: {colour: [red]}", "condition.field_in.field: does not match regex pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(base, tt.from) {
				t.Fatalf("demo.yaml no longer contains %q", tt.from)
			}
			_, err := bootstrap.Parse([]byte(strings.Replace(base, tt.from, tt.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
