package metrics

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/conversation"
	"github.com/parleyhq/parley/ent/queue"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/store"
)

const (
	// QueueCacheTTL is how long a count of the queues' waiting
	// conversations serves scrapes before the store is asked again, so
	// that a storm of scrapes costs the store one query a while.
	QueueCacheTTL = 5 * time.Second
	// queueQueryTimeout bounds the count's queries.
	queueQueryTimeout = 2 * time.Second
)

// queueCollector reports, for every queue, how many conversations wait in
// it (state queued, offered or not), counted at scrape time and cached for
// QueueCacheTTL on the registry's clock. A failed count is cached too.
type queueCollector struct {
	db   *atomic.Pointer[store.DB]
	clk  clock.Clock
	desc *prometheus.Desc

	// mu makes concurrent scrapes wait for one count rather than each
	// make their own.
	mu      sync.Mutex
	counted time.Time
	metrics []prometheus.Metric
}

func newQueueCollector(db *atomic.Pointer[store.DB], clk clock.Clock) *queueCollector {
	return &queueCollector{
		db:  db,
		clk: clk,
		desc: prometheus.NewDesc(namespace+"_queue_waiting_conversations",
			"Conversations waiting in a queue (offered or not), counted at most every 5 s.",
			[]string{"queue", "queue_id"}, nil),
	}
}

// Describe sends the collector's one descriptor.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect sends each queue's count, from the cache while it is fresh.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	db := c.db.Load()
	if db == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.clk.Now(); c.metrics == nil || now.Sub(c.counted) >= QueueCacheTTL {
		c.metrics, c.counted = c.count(db), now
	}
	for _, m := range c.metrics {
		ch <- m
	}
}

// count asks the store for every queue's waiting conversations; on failure
// it returns one invalid metric, which the scrape reports and leaves out.
func (c *queueCollector) count(db *store.DB) []prometheus.Metric {
	ctx, cancel := context.WithTimeout(context.Background(), queueQueryTimeout)
	defer cancel()
	queues, err := db.Queue.Query().Select(queue.FieldID, queue.FieldDisplayName).All(ctx)
	if err != nil {
		return []prometheus.Metric{prometheus.NewInvalidMetric(c.desc, fmt.Errorf("list queues: %w", err))}
	}
	var rows []struct {
		QueueID uuid.UUID `json:"queue_id"`
		Count   int       `json:"count"`
	}
	err = db.Conversation.Query().
		Where(conversation.StateEQ(conversation.StateQueued), conversation.QueueIDNotNil()).
		GroupBy(conversation.FieldQueueID).
		Aggregate(ent.Count()).
		Scan(ctx, &rows)
	if err != nil {
		return []prometheus.Metric{prometheus.NewInvalidMetric(c.desc, fmt.Errorf("count waiting conversations: %w", err))}
	}
	waiting := make(map[uuid.UUID]int, len(rows))
	for _, row := range rows {
		waiting[row.QueueID] = row.Count
	}
	out := make([]prometheus.Metric, 0, len(queues))
	for _, q := range queues {
		out = append(out, prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(waiting[q.ID]), q.DisplayName, q.ID.String()))
	}
	return out
}
