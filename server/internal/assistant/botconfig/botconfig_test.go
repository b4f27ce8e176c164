package botconfig

import (
	"slices"
	"testing"
)

func TestQueueNames(t *testing.T) {
	got, err := QueueNames([]byte(`
topics:
  - id: a
    steps:
      - handoff: {reason: topic, queue: Billing Support}
      - call: x
        on_error:
          - handoff: {queue: " Order Support "}
      - branch:
          slot: s
          cases: {y: [{handoff: {queue: Billing Support}}]}
          default: [{handoff: {reason: topic}}]
`))
	if err != nil || !slices.Equal(got, []string{"Billing Support", "Order Support"}) {
		t.Fatalf("QueueNames = %q, %v", got, err)
	}
	if got, err := QueueNames(nil); err != nil || len(got) != 0 {
		t.Fatalf("QueueNames(empty) = %q, %v", got, err)
	}
	if _, err := QueueNames([]byte("topics: [")); err == nil {
		t.Fatal("bad YAML read")
	}
}
