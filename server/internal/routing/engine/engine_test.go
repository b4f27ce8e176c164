package engine

import (
	"reflect"
	"testing"
	"time"
)

func TestRoute(t *testing.T) {
	rules := []Rule{
		{ID: "r3", Order: 30, QueueID: "product", Condition: Condition{Field: "issue_type", Values: []string{"product"}}},
		{ID: "r1", Order: 10, QueueID: "billing", Condition: Condition{Field: "issue_type", Values: []string{"billing"}}},
		{ID: "r2", Order: 20, QueueID: "mobile-orders", Condition: Condition{All: []Condition{
			{Field: "issue_type", Values: []string{"order"}},
			{Field: "channel", Values: []string{"mobile"}},
		}}},
		{ID: "r4", Order: 40, QueueID: "orders", Condition: Condition{Any: []Condition{
			{Field: "issue_type", Values: []string{"order", "return"}},
		}}},
	}
	tests := []struct {
		name string
		in   Interaction
		want string
		ok   bool
	}{
		{"equality", Interaction{"issue_type": "billing", "channel": "web_portal"}, "billing", true},
		{"all holds", Interaction{"issue_type": "order", "channel": "mobile"}, "mobile-orders", true},
		{"all fails, any holds", Interaction{"issue_type": "order", "channel": "web_portal"}, "orders", true},
		{"set membership", Interaction{"issue_type": "return"}, "orders", true},
		{"no rule", Interaction{"issue_type": "legal"}, "", false},
		{"missing field", Interaction{}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Route(rules, tt.in)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("Route = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestRouteFirstMatchByOrder(t *testing.T) {
	c := Condition{Field: "issue_type", Values: []string{"billing"}}
	rules := []Rule{{ID: "late", Order: 5, QueueID: "b", Condition: c}, {ID: "early", Order: 1, QueueID: "a", Condition: c}}
	if got, _ := Route(rules, Interaction{"issue_type": "billing"}); got != "a" {
		t.Fatalf("Route = %q, want the lower order's queue a", got)
	}
}

func TestAssign(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	q := map[string]bool{"q": true}
	tests := []struct {
		name   string
		work   []Work
		agents []Agent
		want   []Decision
	}{
		{
			name:   "most free capacity wins",
			work:   []Work{{ConversationID: "c1", QueueID: "q", QueuedAt: t0}},
			agents: []Agent{{ID: "a", Capacity: 3, Load: 2, Queues: q}, {ID: "b", Capacity: 3, Load: 0, Queues: q}},
			want:   []Decision{{"c1", "b"}},
		},
		{
			name: "tie broken by longest idle, then id",
			work: []Work{{ConversationID: "c1", QueueID: "q", QueuedAt: t0}, {ConversationID: "c2", QueueID: "q", QueuedAt: t0.Add(time.Second)}},
			agents: []Agent{
				{ID: "a", Capacity: 1, LastAssigned: t0.Add(time.Minute), Queues: q},
				{ID: "c", Capacity: 1, Queues: q},
				{ID: "b", Capacity: 1, Queues: q},
			},
			want: []Decision{{"c1", "b"}, {"c2", "c"}},
		},
		{
			name:   "oldest first when capacity is short",
			work:   []Work{{ConversationID: "new", QueueID: "q", QueuedAt: t0.Add(time.Minute)}, {ConversationID: "old", QueueID: "q", QueuedAt: t0}},
			agents: []Agent{{ID: "a", Capacity: 1, Queues: q}},
			want:   []Decision{{"old", "a"}},
		},
		{
			name:   "queue membership and exclusion",
			work:   []Work{{ConversationID: "c1", QueueID: "q", QueuedAt: t0, Excluded: map[string]bool{"a": true}}},
			agents: []Agent{{ID: "a", Capacity: 5, Queues: q}, {ID: "other", Capacity: 5, Queues: map[string]bool{"x": true}}, {ID: "b", Capacity: 1, Queues: q}},
			want:   []Decision{{"c1", "b"}},
		},
		{
			name:   "full agents get nothing",
			work:   []Work{{ConversationID: "c1", QueueID: "q", QueuedAt: t0}},
			agents: []Agent{{ID: "a", Capacity: 2, Load: 2, Queues: q}},
			want:   nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Assign(tt.work, tt.agents); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Assign = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAssignNeverExceedsCapacity(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	q := map[string]bool{"q": true}
	var work []Work
	for i := range 50 {
		work = append(work, Work{ConversationID: string(rune('A' + i)), QueueID: "q", QueuedAt: t0.Add(time.Duration(i))})
	}
	agents := []Agent{{ID: "a", Capacity: 3, Load: 1, Queues: q}, {ID: "b", Capacity: 4, Queues: q}}
	got := Assign(work, agents)
	count := map[string]int{}
	for _, d := range got {
		count[d.AgentID]++
	}
	if count["a"] != 2 || count["b"] != 4 || len(got) != 6 {
		t.Fatalf("assignments per agent = %v (total %d); want a:2 b:4", count, len(got))
	}
	for i, d := range got {
		if want := work[i].ConversationID; d.ConversationID != want {
			t.Fatalf("decision %d went to %s, want FIFO order %s", i, d.ConversationID, want)
		}
	}
}
