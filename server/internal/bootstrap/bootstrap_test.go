package bootstrap_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parleyhq/parley/ent/agent"
	"github.com/parleyhq/parley/ent/queue"
	"github.com/parleyhq/parley/ent/schema"
	"github.com/parleyhq/parley/ent/site"
	"github.com/parleyhq/parley/ent/token"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/store"
)

func TestDemoAppliesOnce(t *testing.T) {
	ctx := context.Background()
	db, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "parley.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	f, err := bootstrap.ParseDemo()
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		res, err := bootstrap.Apply(ctx, db, f, nil)
		if err != nil || res.Applied != want || res.GeneratedAdminToken != "" {
			t.Fatalf("apply #%d: %+v err=%v, want applied=%v and no generated token", i+1, res, err, want)
		}
	}
	for name, count := range map[string]func(context.Context) (int, error){
		"queues": db.Queue.Query().Count,
		"rules":  db.MatchingRule.Query().Count,
		"agents": db.Agent.Query().Count,
		"tokens": db.Token.Query().Count,
		"sites":  db.Site.Query().Count,
	} {
		n, err := count(ctx)
		if err != nil || n != map[string]int{"queues": 3, "rules": 3, "agents": 3, "tokens": 5, "sites": 1}[name] {
			t.Errorf("%s: %d (%v)", name, n, err)
		}
	}
	// The demo page's site, with the virtual agent on, and the supervisor.
	shop, err := db.Site.Query().Where(site.DisplayName("Demo Shop")).Only(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if shop.Bot != site.BotOn || !slices.Equal(shop.AllowedOrigins, []string{"http://localhost:8080", "http://127.0.0.1:8080"}) {
		t.Errorf("demo site: bot %s, origins %v", shop.Bot, shop.AllowedOrigins)
	}
	if tok, err := db.Token.Query().Where(token.Hash(auth.Hash("ps_demo_supervisor"))).Only(ctx); err != nil || tok.Role != token.RoleSupervisor {
		t.Errorf("demo supervisor token: %+v, %v", tok, err)
	}
	// The pre-chat form's extra fields: an optional order number and an
	// optional choice.
	set, err := db.Setting.Get(ctx, schema.SettingsID)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.PreChatFields) != 2 ||
		set.PreChatFields[0].Name != "order_number" || set.PreChatFields[0].Label != "Order number" ||
		set.PreChatFields[0].Required || set.PreChatFields[0].Hint == "" || len(set.PreChatFields[0].Options) != 0 ||
		set.PreChatFields[1].Name != "contact_preference" ||
		!slices.Equal(set.PreChatFields[1].Options, []string{"Chat only", "Email me a copy"}) {
		t.Errorf("demo pre-chat fields: %+v", set.PreChatFields)
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
		{"unknown strategy", "{name: Billing Support,", "{name: Billing Support, strategy: random,", `"random" is not a known routing_strategy value`},
		{"overflow to an unknown queue", "{name: Billing Support,", "{name: Billing Support, overflow: Nowhere,", `overflow "Nowhere" must name another queue`},
		{"unknown channel capacity", "capacity: 2\n", "capacity: 2\n    channel_capacity: {fax: 1}\n", `channel_capacity names "fax"`},
		{"unknown site bot setting", "bot: on", "bot: maybe", `sites[0] "Demo Shop": bot: "maybe" is not a known site_bot value`},
		{"reserved pre-chat field name", "name: order_number", "name: email", "pre_chat_fields[0].name: name must not be name, email"},
		{"duplicate pre-chat field name", "name: contact_preference", "name: order_number", "pre_chat_fields must have unique names"},
		{"too long pre-chat field", "max_length: 40", "max_length: 501", "pre_chat_fields[0].max_length"},
		{"site origin with a path", "http://127.0.0.1:8080]", "http://127.0.0.1:8080/shop]", `sites[0] "Demo Shop"`},
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

// TestQueuePolicyFromFile: a queue's routing policy and an agent's skills
// and channel limits are read from the file and stored.
func TestQueuePolicyFromFile(t *testing.T) {
	ctx := context.Background()
	db, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "parley.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	data := strings.Replace(string(bootstrap.Demo), "{name: Billing Support, offer_timeout: 30s}",
		"{name: Billing Support, offer_timeout: 30s, priority: 7, strategy: least_recently_assigned, required_skills: [billing],"+
			" timeout_presence: offline, max_wait: 5m, overflow: Order Support, agent_loss: keep, wrap_up: 1m, auto_accept: true}", 1)
	data = strings.Replace(data, "capacity: 2\n", "capacity: 2\n    skills: [french]\n    channel_capacity: {mobile: 1}\n", 1)
	// A file of one's own: the demo's public tokens are refused there.
	data = strings.ReplaceAll(data, "ps_demo_", "ps_test_")
	f, err := bootstrap.Parse([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bootstrap.Apply(ctx, db, f, nil); err != nil {
		t.Fatal(err)
	}
	q, err := db.Queue.Query().Where(queue.DisplayName("Billing Support")).Only(ctx)
	if err != nil {
		t.Fatal(err)
	}
	order, err := db.Queue.Query().Where(queue.DisplayName("Order Support")).Only(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if q.Priority != 7 || q.Strategy != queue.StrategyLeastRecentlyAssigned || len(q.RequiredSkills) != 1 || q.TimeoutPresence != queue.TimeoutPresenceOffline ||
		q.MaxWaitMs != 300000 || q.OverflowQueueID == nil || *q.OverflowQueueID != order.ID || q.AgentLossPolicy != queue.AgentLossPolicyKeep ||
		q.WrapUpMs != 60000 || !q.AutoAccept {
		t.Fatalf("queue policy not stored: %+v", q)
	}
	abel, err := db.Agent.Query().Where(agent.DisplayName("Abel Tuter")).Only(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(abel.Skills) != 1 || abel.Skills[0] != "french" || abel.ChannelCapacity["mobile"] != 1 {
		t.Fatalf("agent: skills %v, channel capacity %v", abel.Skills, abel.ChannelCapacity)
	}
}
