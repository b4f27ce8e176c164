package admin

import (
	"fmt"
	"slices"

	"connectrpc.com/connect/v2"
	"github.com/parleyhq/parley/ent"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"google.golang.org/protobuf/encoding/protojson"
)

// channelCapacities converts per-channel limits for storage.
func channelCapacities(in []*parleyv1.ChannelCapacity) (map[string]int, error) {
	out := map[string]int{}
	for _, c := range in {
		name := string(chatlog.ChannelFromProto(c.GetChannel()))
		if _, dup := out[name]; dup {
			return nil, apierr.New(connect.CodeInvalidArgument, "CHANNEL_CAPACITY_TWICE",
				fmt.Sprintf("channel_capacities lists %s twice", c.GetChannel()))
		}
		out[name] = int(c.GetCapacity())
	}
	return out, nil
}

func ruleToProto(r *ent.MatchingRule) (*parleyv1.MatchingRule, error) {
	cond := &parleyv1.Condition{}
	if err := protojson.Unmarshal([]byte(r.Condition), cond); err != nil {
		return nil, fmt.Errorf("decode condition of rule %s: %w", r.ID, err)
	}
	return &parleyv1.MatchingRule{
		Id:          r.ID.String(),
		DisplayName: r.DisplayName,
		Order:       r.Order,
		QueueId:     r.QueueID.String(),
		Condition:   cond,
	}, nil
}

// maxConditionDepth bounds how deeply all/any may nest.
const maxConditionDepth = 5

var channelValues = []string{"web_portal", "messenger", "mobile"}

// CheckCondition rejects conditions the engine could never match: unknown
// channel names and nesting deeper than maxConditionDepth.
func CheckCondition(c *parleyv1.Condition) error {
	return checkCondition(c, 1)
}

func checkCondition(c *parleyv1.Condition, depth int) error {
	if depth > maxConditionDepth {
		return apierr.New(connect.CodeInvalidArgument, "CONDITION_TOO_DEEP",
			fmt.Sprintf("condition nests deeper than %d levels", maxConditionDepth))
	}
	switch k := c.GetKind().(type) {
	case *parleyv1.Condition_FieldIn:
		if k.FieldIn.GetField() == "channel" {
			for _, v := range k.FieldIn.GetValues() {
				if !slices.Contains(channelValues, v) {
					return apierr.New(connect.CodeInvalidArgument, "UNKNOWN_CHANNEL",
						fmt.Sprintf("channel %q is not one of %v", v, channelValues))
				}
			}
		}
	case *parleyv1.Condition_All:
		for _, sub := range k.All.GetConditions() {
			if err := checkCondition(sub, depth+1); err != nil {
				return err
			}
		}
	case *parleyv1.Condition_Any:
		for _, sub := range k.Any.GetConditions() {
			if err := checkCondition(sub, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
