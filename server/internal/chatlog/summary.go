package chatlog

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/botsession"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"google.golang.org/protobuf/proto"
)

// LoadSummary returns the hand-off summary stored for a conversation (at
// the virtual agent's hand-off or an agent's transfer), or nil.
func LoadSummary(ctx context.Context, db *ent.Client, convID uuid.UUID) (*parleyv1.ConversationSummary, error) {
	sess, err := db.BotSession.Query().Where(botsession.ConversationID(convID)).Only(ctx)
	if ent.IsNotFound(err) || (err == nil && sess.Summary == nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load summary of %s: %w", convID, err)
	}
	var s parleyv1.ConversationSummary
	if err := proto.Unmarshal(*sess.Summary, &s); err != nil {
		return nil, fmt.Errorf("decode summary of %s: %w", convID, err)
	}
	return &s, nil
}
