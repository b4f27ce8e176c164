package assistant

import (
	"context"
	_ "embed"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Action is a Go function a topic's `call` step runs with the slots
// filled so far; what it returns is saved into the conversation's context
// (and shown to the agent in the summary). Actions run outside any
// transaction and may run twice for one turn if a replica dies between
// running it and committing the answer, so they must be safe to repeat:
// lookups, not payments.
type Action func(ctx context.Context, slots map[string]string) (map[string]string, error)

// Actions are the registered actions by name.
type Actions map[string]Action

// Names lists the registered action names, sorted.
func (a Actions) Names() []string {
	return slices.Sorted(maps.Keys(a))
}

// demoOrders are the orders of the demo shop that lookup_order knows.
//
//go:embed demo_orders.yaml
var demoOrders []byte

// DemoOrder is one order of the demo shop.
type DemoOrder struct {
	Status   string `yaml:"status"`
	ETA      string `yaml:"eta"`
	Carrier  string `yaml:"carrier"`
	Tracking string `yaml:"tracking"`
}

// DemoActions are the actions of the demo bot configuration: lookup_order
// finds an order of the demo shop by its number (slot order_number).
func DemoActions() (Actions, error) {
	var orders map[string]DemoOrder
	if err := yaml.Unmarshal(demoOrders, &orders); err != nil {
		return nil, fmt.Errorf("parse demo orders: %w", err)
	}
	return Actions{
		"lookup_order": func(_ context.Context, slots map[string]string) (map[string]string, error) {
			number := strings.TrimSpace(slots["order_number"])
			o, ok := orders[number]
			if !ok {
				return nil, fmt.Errorf("no order %s", number)
			}
			return map[string]string{"status": o.Status, "eta": o.ETA, "carrier": o.Carrier, "tracking": o.Tracking}, nil
		},
	}, nil
}
