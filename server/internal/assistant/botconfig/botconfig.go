// Package botconfig reads what other services need of the virtual agent's
// stored configuration without the dialog engine (which checks all of it):
// the queues its hand-offs name.
package botconfig

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// QueueNames lists the queue names that the handoff steps of a bot
// configuration name, wherever they sit (in branches and on_error steps
// too), without checking the rest of it; an empty text names none.
func QueueNames(yamlText []byte) ([]string, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(yamlText, &root); err != nil {
		return nil, fmt.Errorf("bot config: %w", err)
	}
	var out []string
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value != "handoff" || n.Content[i+1].Kind != yaml.MappingNode {
					continue
				}
				h := n.Content[i+1]
				for j := 0; j+1 < len(h.Content); j += 2 {
					if q := strings.TrimSpace(h.Content[j+1].Value); h.Content[j].Value == "queue" && q != "" && !slices.Contains(out, q) {
						out = append(out, q)
					}
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
	return out, nil
}
