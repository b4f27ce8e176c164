package messaging

import (
	"context"
	"math"
	"strconv"

	"connectrpc.com/connect/v2"
	"github.com/parleyhq/parley/ent"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/paging"
)

// Page sizes of ListEvents.
const (
	defaultPageSize = 100
	maxPageSize     = 500
)

// ListEvents pages through the log by seq, from the first event forward
// or from the newest back. A page token only continues the direction it
// came from.
func (s *Service) ListEvents(ctx context.Context, req *parleyv1.ListEventsRequest) (*parleyv1.ListEventsResponse, error) {
	id := chatlog.ParseID(req.GetConversationId())
	p := auth.FromContext(ctx)
	conv, err := chatlog.Authorize(ctx, s.db.Client, p, id, chatlog.Read)
	if err != nil {
		return nil, err
	}
	viewer := chatlog.ViewerID(p, conv)
	end, _, err := chatlog.HistoryEnd(ctx, s.db.Client, p, conv)
	if err != nil {
		return nil, err
	}
	scope := id.String()
	if req.GetNewestFirst() {
		scope += "/newest-first"
	}
	after, err := paging.Decode(scope, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	var cursor int64
	if after != "" {
		if cursor, err = strconv.ParseInt(after, 10, 64); err != nil || cursor < 0 {
			return nil, apierr.New(connect.CodeInvalidArgument, "INVALID_PAGE_TOKEN", "page_token is not one this list returned; start again without it")
		}
	}
	size := paging.Size(req.GetPageSize(), defaultPageSize, maxPageSize)
	var rows []*ent.Event
	if req.GetNewestFirst() {
		before := int64(math.MaxInt64)
		if after != "" {
			before = cursor
		}
		rows, err = chatlog.EventsBefore(ctx, s.db.Client, id, min(before, end+1), size+1)
	} else {
		rows, err = chatlog.EventsAfter(ctx, s.db.Client, id, cursor, size+1)
	}
	if err != nil {
		return nil, apierr.Internal(err)
	}
	// An agent who handed the chat over reads it up to when they left.
	for i, ev := range rows {
		if ev.Seq > end {
			rows = rows[:i]
			break
		}
	}
	page, next := paging.Trim(rows, size, scope, func(ev *ent.Event) string { return strconv.FormatInt(ev.Seq, 10) })
	resp := &parleyv1.ListEventsResponse{NextPageToken: next}
	for _, ev := range page {
		out, err := chatlog.EventToProto(ev, viewer)
		if err != nil {
			return nil, apierr.Internal(err)
		}
		resp.Events = append(resp.Events, out)
	}
	return resp, nil
}
