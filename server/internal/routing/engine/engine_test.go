package engine

import (
	"fmt"
	"maps"
	"math/rand/v2"
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

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// agent returns an agent available on every test channel, in queues qs.
func agent(id string, capacity, load int, qs ...string) Agent {
	a := Agent{ID: id, Capacity: capacity, Load: load, Queues: map[string]bool{}, Skills: map[string]bool{},
		AvailableOn: map[string]bool{"web": true, "mobile": true}}
	for _, q := range qs {
		a.Queues[q] = true
	}
	return a
}

func work(id, queue string, queuedAfter time.Duration) Work {
	return Work{ConversationID: id, QueueID: queue, Channel: "web", QueuedAt: t0.Add(queuedAfter)}
}

func TestAssign(t *testing.T) {
	queues := map[string]Queue{"q": {}, "lra": {Strategy: LeastRecentlyAssigned}, "vip": {}, "tech": {RequiredSkills: []string{"french", "billing"}}}
	with := func(a Agent, edit func(*Agent)) Agent { edit(&a); return a }
	tests := []struct {
		name   string
		work   []Work
		agents []Agent
		want   []Decision
	}{
		{
			name:   "most free capacity wins",
			work:   []Work{work("c1", "q", 0)},
			agents: []Agent{agent("a", 3, 2, "q"), agent("b", 3, 0, "q")},
			want:   []Decision{{"c1", "b"}},
		},
		{
			name: "tie broken by longest idle, then id",
			work: []Work{work("c1", "q", 0), work("c2", "q", time.Second)},
			agents: []Agent{
				with(agent("a", 1, 0, "q"), func(a *Agent) { a.LastAssigned = t0.Add(time.Minute) }),
				agent("c", 1, 0, "q"),
				agent("b", 1, 0, "q"),
			},
			want: []Decision{{"c1", "b"}, {"c2", "c"}},
		},
		{
			name: "least recently assigned beats free capacity in such a queue",
			work: []Work{work("c1", "lra", 0)},
			agents: []Agent{
				with(agent("busy-but-idle", 5, 4, "lra"), func(a *Agent) { a.LastAssigned = t0.Add(-time.Hour) }),
				with(agent("free-but-recent", 5, 0, "lra"), func(a *Agent) { a.LastAssigned = t0 }),
			},
			want: []Decision{{"c1", "busy-but-idle"}},
		},
		{
			name: "an agent chosen in a pass counts as just assigned",
			work: []Work{work("c1", "lra", 0), work("c2", "lra", time.Second)},
			agents: []Agent{
				with(agent("a", 5, 0, "lra"), func(a *Agent) { a.LastAssigned = t0.Add(-2 * time.Hour) }),
				with(agent("b", 5, 0, "lra"), func(a *Agent) { a.LastAssigned = t0.Add(-time.Hour) }),
			},
			want: []Decision{{"c1", "a"}, {"c2", "b"}},
		},
		{
			name:   "oldest first when capacity is short",
			work:   []Work{work("new", "q", time.Minute), work("old", "q", 0)},
			agents: []Agent{agent("a", 1, 0, "q")},
			want:   []Decision{{"old", "a"}},
		},
		{
			name:   "higher priority first, across queues",
			work:   []Work{work("old-normal", "q", 0), with2(work("new-vip", "vip", time.Hour), func(w *Work) { w.Priority = 10 })},
			agents: []Agent{agent("a", 1, 0, "q", "vip")},
			want:   []Decision{{"new-vip", "a"}},
		},
		{
			name:   "queue membership",
			work:   []Work{work("c1", "q", 0)},
			agents: []Agent{agent("other", 5, 0, "x"), agent("b", 1, 0, "q")},
			want:   []Decision{{"c1", "b"}},
		},
		{
			name:   "an agent who refused is passed over while another can take it",
			work:   []Work{with2(work("c1", "q", 0), func(w *Work) { w.Refused = map[string]bool{"a": true} })},
			agents: []Agent{agent("a", 5, 0, "q"), agent("b", 5, 4, "q")},
			want:   []Decision{{"c1", "b"}},
		},
		{
			name:   "an agent who refused is offered again when no one else can take it",
			work:   []Work{with2(work("c1", "q", 0), func(w *Work) { w.Refused = map[string]bool{"a": true} })},
			agents: []Agent{agent("a", 5, 0, "q"), agent("b", 5, 5, "q")},
			want:   []Decision{{"c1", "a"}},
		},
		{
			name:   "an agent resting from a refusal is not offered the work even when nobody else can take it",
			work:   []Work{with2(work("c1", "q", 0), func(w *Work) { w.Resting = map[string]bool{"a": true} })},
			agents: []Agent{agent("a", 5, 0, "q"), agent("b", 5, 5, "q")},
			want:   nil,
		},
		{
			name:   "required skills",
			work:   []Work{work("c1", "tech", 0)},
			agents: []Agent{with(agent("fr", 5, 0, "tech"), func(a *Agent) { a.Skills["french"] = true }), with(agent("both", 1, 0, "tech"), func(a *Agent) { a.Skills["french"], a.Skills["billing"] = true, true })},
			want:   []Decision{{"c1", "both"}},
		},
		{
			name:   "presence per channel",
			work:   []Work{with2(work("m1", "q", 0), func(w *Work) { w.Channel = "mobile" }), work("w1", "q", time.Second)},
			agents: []Agent{with(agent("web-only", 5, 0, "q"), func(a *Agent) { a.AvailableOn = map[string]bool{"web": true} })},
			want:   []Decision{{"w1", "web-only"}},
		},
		{
			name: "capacity per channel within the universal capacity",
			work: []Work{work("w1", "q", 0), work("w2", "q", 1), with2(work("m1", "q", 2), func(w *Work) { w.Channel = "mobile" }), with2(work("m2", "q", 3), func(w *Work) { w.Channel = "mobile" })},
			agents: []Agent{with(agent("a", 3, 0, "q"), func(a *Agent) {
				a.ChannelCapacity = map[string]int{"web": 1}
			})},
			want: []Decision{{"w1", "a"}, {"m1", "a"}, {"m2", "a"}},
		},
		{
			name:   "full agents get nothing",
			work:   []Work{work("c1", "q", 0)},
			agents: []Agent{agent("a", 2, 2, "q")},
			want:   nil,
		},
		{
			name:   "work of an unknown queue waits",
			work:   []Work{work("c1", "gone", 0)},
			agents: []Agent{agent("a", 2, 0, "gone")},
			want:   nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Assign(queues, tt.work, tt.agents, t0); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Assign = %v, want %v", got, tt.want)
			}
		})
	}
}

func with2(w Work, edit func(*Work)) Work { edit(&w); return w }

// TestAssignProperties checks Assign on random snapshots: no agent's
// capacity (universal or per channel) is exceeded and no resting agent is
// chosen; afterwards no waiting work has an eligible agent with free
// capacity; and within a queue and
// channel, work is served strictly in order (priority, then first in,
// first out): nothing left waiting ranks before something served.
func TestAssignProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	channels := []string{"web", "mobile", "messenger"}
	queueIDs := []string{"q0", "q1", "q2", "q3"}
	skills := []string{"s0", "s1", "s2"}
	for round := range 2000 {
		queues := map[string]Queue{}
		for _, id := range queueIDs {
			q := Queue{Strategy: Strategy(rng.IntN(2))}
			if rng.IntN(3) == 0 {
				q.RequiredSkills = []string{skills[rng.IntN(len(skills))]}
			}
			queues[id] = q
		}
		var agents []Agent
		for i := range rng.IntN(8) {
			a := Agent{ID: string(rune('a' + i)), Capacity: rng.IntN(4), Queues: map[string]bool{}, Skills: map[string]bool{},
				AvailableOn: map[string]bool{}, ChannelCapacity: map[string]int{}, ChannelLoad: map[string]int{},
				LastAssigned: t0.Add(time.Duration(rng.IntN(5)) * time.Minute)}
			a.Load = rng.IntN(a.Capacity + 1)
			for _, q := range queueIDs {
				a.Queues[q] = rng.IntN(2) == 0
			}
			for _, s := range skills {
				a.Skills[s] = rng.IntN(2) == 0
			}
			for _, c := range channels {
				a.AvailableOn[c] = rng.IntN(4) != 0
				if rng.IntN(3) == 0 {
					a.ChannelCapacity[c] = rng.IntN(3)
					a.ChannelLoad[c] = rng.IntN(a.ChannelCapacity[c] + 1)
				}
			}
			agents = append(agents, a)
		}
		var waiting []Work
		for i := range rng.IntN(20) {
			w := Work{ConversationID: fmt.Sprintf("w%02d", i), QueueID: queueIDs[rng.IntN(len(queueIDs))], Channel: channels[rng.IntN(len(channels))],
				Priority: rng.IntN(3), QueuedAt: t0.Add(time.Duration(rng.IntN(10)) * time.Second), Refused: map[string]bool{}, Resting: map[string]bool{}}
			for _, a := range agents {
				switch rng.IntN(8) {
				case 0:
					w.Refused[a.ID] = true
				case 1:
					w.Resting[a.ID] = true
				}
			}
			waiting = append(waiting, w)
		}
		decisions := Assign(queues, waiting, agents, t0.Add(time.Hour))

		after := map[string]*Agent{}
		for i := range agents {
			a := agents[i]
			a.ChannelLoad = maps.Clone(a.ChannelLoad)
			after[a.ID] = &a
		}
		served := map[string]bool{}
		byID := map[string]Work{}
		for _, w := range waiting {
			byID[w.ConversationID] = w
		}
		for _, d := range decisions {
			w, a := byID[d.ConversationID], after[d.AgentID]
			if served[d.ConversationID] {
				t.Fatalf("round %d: %s offered twice", round, d.ConversationID)
			}
			if w.Resting[a.ID] || !a.CanTake(w, queues[w.QueueID]) {
				t.Fatalf("round %d: %s offered to %s, who cannot take it (%+v)", round, w.ConversationID, a.ID, *a)
			}
			served[d.ConversationID] = true
			a.take(w.Channel, t0)
		}
		for _, w := range waiting {
			if served[w.ConversationID] {
				continue
			}
			for _, a := range after {
				if !w.Resting[a.ID] && a.CanTake(w, queues[w.QueueID]) {
					t.Fatalf("round %d: %s waits while %s could take it", round, w.ConversationID, a.ID)
				}
			}
			for _, d := range decisions {
				o := byID[d.ConversationID]
				if o.QueueID == w.QueueID && o.Channel == w.Channel && w.before(o) < 0 && !w.Resting[d.AgentID] {
					t.Fatalf("round %d: %s was served before %s, which ranks first", round, o.ConversationID, w.ConversationID)
				}
			}
		}
	}
}

// BenchmarkAssign measures one routing decision pass over 10,000 waiting
// conversations and 1,000 available agents (capacity 3 each, so 3,000
// offers), spread over 20 queues and 3 channels, half the queues needing a
// skill.
func BenchmarkAssign(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	channels := []string{"web", "mobile", "messenger"}
	queues := map[string]Queue{}
	for i := range 20 {
		q := Queue{Strategy: Strategy(i % 2)}
		if i%2 == 0 {
			q.RequiredSkills = []string{fmt.Sprint("skill", i%4)}
		}
		queues[fmt.Sprint("q", i)] = q
	}
	agents := make([]Agent, 1000)
	for i := range agents {
		a := Agent{ID: fmt.Sprintf("agent-%04d", i), Capacity: 3, Queues: map[string]bool{}, Skills: map[string]bool{},
			AvailableOn: map[string]bool{"web": true, "mobile": true, "messenger": true}, ChannelCapacity: map[string]int{"mobile": 2}}
		for range 4 {
			a.Queues[fmt.Sprint("q", rng.IntN(20))] = true
		}
		a.Skills[fmt.Sprint("skill", rng.IntN(4))] = true
		agents[i] = a
	}
	work := make([]Work, 10000)
	for i := range work {
		work[i] = Work{ConversationID: fmt.Sprintf("conv-%05d", i), QueueID: fmt.Sprint("q", rng.IntN(20)), Channel: channels[rng.IntN(3)],
			Priority: rng.IntN(3), QueuedAt: t0.Add(time.Duration(rng.IntN(3600)) * time.Second)}
	}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(Assign(queues, work, agents, t0))
	}
	b.ReportMetric(float64(n), "offers/op")
}
