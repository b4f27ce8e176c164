package routing

import (
	"context"
	"fmt"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/schema"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/routing/engine"
)

// InteractionFields are the fields matching rules read from an
// interaction: the pre-chat form, the channel and site, and what the
// virtual agent captured (intent, "slot.<name>").
func InteractionFields(in *ent.Interaction) engine.Interaction {
	fields := engine.Interaction{
		"issue_type": in.IssueType,
		"channel":    string(in.Channel),
		"language":   in.Language,
		"tier":       in.Tier,
		"intent":     in.Intent,
	}
	if in.SiteID != nil {
		fields["site"] = in.SiteID.String()
	}
	for k, v := range in.FormFields {
		fields["form."+k] = v
	}
	for k, v := range in.Slots {
		fields["slot."+k] = v
	}
	return fields
}

// RouteInteraction picks the queue of the first matching rule, or the
// default queue when none matches, inside tx.
func RouteInteraction(ctx context.Context, tx *ent.Tx, in engine.Interaction) (*ent.Queue, error) {
	rows, err := tx.MatchingRule.Query().All(ctx)
	if err != nil {
		return nil, fmt.Errorf("load matching rules: %w", err)
	}
	rules := make([]engine.Rule, 0, len(rows))
	for _, r := range rows {
		rule, err := RuleToEngine(r)
		if err != nil {
			return nil, err
		}
		rules = append(rules, rule)
	}
	queueID, ok := engine.Route(rules, in)
	if !ok {
		set, err := tx.Setting.Get(ctx, schema.SettingsID)
		if err != nil {
			return nil, fmt.Errorf("load settings: %w", err)
		}
		if set.DefaultQueueID == nil {
			return nil, apierr.New(connect.CodeFailedPrecondition, "NO_MATCHING_QUEUE",
				fmt.Sprintf("no queue serves issue type %q yet; an admin must add a matching rule or a default queue", in["issue_type"]))
		}
		queueID = set.DefaultQueueID.String()
	}
	q, err := tx.Queue.Get(ctx, uuid.MustParse(queueID))
	if err != nil {
		return nil, fmt.Errorf("load queue %s: %w", queueID, err)
	}
	return q, nil
}
