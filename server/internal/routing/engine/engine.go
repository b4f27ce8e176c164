// Package engine is Parley's routing brain: it matches interactions to
// queues by ordered rules and proposes which available agent gets which
// waiting conversation. It is pure (no store, no transport, no clock of its
// own): callers give it a snapshot and commit its proposals with
// conditional updates, so a stale proposal becomes a no-op.
package engine

import (
	"cmp"
	"slices"
	"time"
)

// Interaction is what routing matches on: interaction field name to value.
type Interaction map[string]string

// Condition is a predicate on interaction fields. Exactly one of its forms
// is set: Field with Values (set membership), All, or Any.
type Condition struct {
	Field  string
	Values []string
	All    []Condition
	Any    []Condition
}

// Matches reports whether the interaction satisfies the condition.
func (c Condition) Matches(in Interaction) bool {
	switch {
	case len(c.All) > 0:
		for _, sub := range c.All {
			if !sub.Matches(in) {
				return false
			}
		}
		return true
	case len(c.Any) > 0:
		for _, sub := range c.Any {
			if sub.Matches(in) {
				return true
			}
		}
		return false
	case c.Field != "":
		v, ok := in[c.Field]
		return ok && slices.Contains(c.Values, v)
	}
	return false
}

// Rule routes matching interactions to a queue.
type Rule struct {
	ID        string
	Order     int32
	QueueID   string
	Condition Condition
}

// Route returns the queue of the first rule, by ascending Order, that the
// interaction matches.
func Route(rules []Rule, in Interaction) (queueID string, ok bool) {
	sorted := slices.SortedFunc(slices.Values(rules), func(a, b Rule) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.ID, b.ID))
	})
	for _, r := range sorted {
		if r.Condition.Matches(in) {
			return r.QueueID, true
		}
	}
	return "", false
}

// Work is a conversation waiting in a queue with no pending offer.
type Work struct {
	ConversationID string
	QueueID        string
	QueuedAt       time.Time
	// Excluded agents declined or let lapse an offer of this conversation.
	Excluded map[string]bool
}

// Agent is an available agent's routing state.
type Agent struct {
	ID       string
	Capacity int
	// Load counts held conversations and pending offers.
	Load int
	// LastAssigned is the zero time for an agent never assigned.
	LastAssigned time.Time
	Queues       map[string]bool
}

func (a Agent) free() int { return a.Capacity - a.Load }

// Decision proposes offering a conversation to an agent.
type Decision struct {
	ConversationID string
	AgentID        string
}

// Assign proposes offers for waiting work, oldest first, each to the
// eligible agent with the most free capacity, then the longest since their
// last assignment, then the smallest id. An agent is eligible when it is a
// member of the work's queue, has free capacity and is not excluded. The
// proposals never exceed any agent's free capacity.
func Assign(work []Work, agents []Agent) []Decision {
	pool := slices.Clone(agents)
	queue := slices.SortedFunc(slices.Values(work), func(a, b Work) int {
		return cmp.Or(a.QueuedAt.Compare(b.QueuedAt), cmp.Compare(a.ConversationID, b.ConversationID))
	})
	var out []Decision
	for _, w := range queue {
		best := -1
		for i, a := range pool {
			if a.free() <= 0 || !a.Queues[w.QueueID] || w.Excluded[a.ID] {
				continue
			}
			if best < 0 || better(a, pool[best]) {
				best = i
			}
		}
		if best < 0 {
			continue
		}
		pool[best].Load++
		out = append(out, Decision{ConversationID: w.ConversationID, AgentID: pool[best].ID})
	}
	return out
}

// better reports whether a ranks before b.
func better(a, b Agent) bool {
	if a.free() != b.free() {
		return a.free() > b.free()
	}
	if !a.LastAssigned.Equal(b.LastAssigned) {
		return a.LastAssigned.Before(b.LastAssigned)
	}
	return a.ID < b.ID
}
