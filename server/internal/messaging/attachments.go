package messaging

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"github.com/parleyhq/parley/ent"
	"github.com/parleyhq/parley/ent/attachment"
	"github.com/parleyhq/parley/ent/event"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/chatlog"
	"github.com/parleyhq/parley/server/internal/idempotency"
	"github.com/parleyhq/parley/server/internal/ratelimit"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultAttachmentTypes is the default content-type allowlist: common
// images, PDF and plain text, whose content Parley can check against the
// declared type.
var DefaultAttachmentTypes = []string{"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"}

// sniffable are the types http.DetectContentType recognizes; content
// declared as one of them must be recognized as it.
var sniffable = []string{"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"}

// attachmentMeta are the columns of an attachment without its content.
var attachmentMeta = []string{
	attachment.FieldID, attachment.FieldCreatedAt, attachment.FieldConversationID,
	attachment.FieldUploaderRole, attachment.FieldUploaderID, attachment.FieldUploaderName,
	attachment.FieldFilename, attachment.FieldContentType, attachment.FieldSize, attachment.FieldSha256,
}

// UploadAttachment checks and stores a file for the conversation.
func (s *Service) UploadAttachment(ctx context.Context, req *parleyv1.UploadAttachmentRequest) (*parleyv1.UploadAttachmentResponse, error) {
	p := auth.FromContext(ctx)
	id := chatlog.ParseID(req.GetConversationId())
	conv, err := chatlog.Authorize(ctx, s.db.Client, p, id, chatlog.Post)
	if err != nil {
		return nil, err
	}
	if err := s.checkContent(req); err != nil {
		return nil, err
	}
	me, err := chatlog.SenderOf(ctx, s.db.Client, p, conv)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	now := s.clk.Now()
	key := idempotency.Key{Caller: p.Caller(), Procedure: parleyv1connect.MessagingServiceUploadAttachmentProcedure, ID: req.GetRequestId(), Now: now}
	limited := false
	resp, _, err := idempotency.Do(ctx, s.db, key, req, func(ctx context.Context, tx *ent.Tx) (*parleyv1.UploadAttachmentResponse, error) {
		limited = false
		// Only a new upload counts against the rate limit, not a retry: it
		// is spent in the upload's transaction, so one not written spends
		// nothing, and on PostgreSQL every replica spends from one bucket.
		ok, wait, err := s.limits.Spend(ctx, tx, p.Caller(), now)
		if err != nil {
			return nil, err
		}
		if !ok {
			limited = true
			return nil, ratelimit.Refusal("SEND_RATE_LIMITED", "you are sending", wait)
		}
		cur, err := tx.Conversation.Get(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("reload conversation: %w", err)
		}
		if err := chatlog.CheckPost(p, cur); err != nil {
			return nil, err
		}
		if err := s.checkQuota(ctx, tx, id, int64(len(req.GetContent()))); err != nil {
			return nil, err
		}
		a, err := tx.Attachment.Create().
			SetCreatedAt(now).
			SetConversationID(id).
			SetUploaderRole(attachment.UploaderRole(me.Role)).
			SetUploaderID(me.ID).
			SetUploaderName(me.Name).
			SetFilename(req.GetFilename()).
			SetContentType(req.GetContentType()).
			SetSize(int64(len(req.GetContent()))).
			SetSha256(req.GetSha256()).
			SetContent(req.GetContent()).
			Save(ctx)
		if err != nil {
			return nil, fmt.Errorf("store attachment: %w", err)
		}
		if err := touchCustomer(ctx, tx, p, id, now); err != nil {
			return nil, err
		}
		return &parleyv1.UploadAttachmentResponse{Attachment: attachmentToProto(a)}, nil
	})
	if err != nil && !limited && connect.CodeOf(err) != connect.CodeUnavailable {
		// Refused for what it asked (over the quota, a closed chat), not
		// for the server's state: it counts like any other upload.
		s.limits.Take(ctx, p.Caller(), now)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// maxAttachmentsPerConversation bounds how many files one conversation
// holds, whatever their size.
const maxAttachmentsPerConversation = 500

// checkQuota refuses an upload that would take the conversation's
// attachments past their quota (in bytes, together, and in number),
// counting unreferenced uploads until the retention sweep deletes them.
func (s *Service) checkQuota(ctx context.Context, tx *ent.Tx, convID uuid.UUID, size int64) error {
	var usage []struct {
		Count int   `json:"count"`
		Sum   int64 `json:"sum"`
	}
	err := tx.Attachment.Query().Where(attachment.ConversationID(convID)).
		Aggregate(ent.Count(), ent.As(ent.Sum(attachment.FieldSize), "sum")).
		Scan(ctx, &usage)
	if err != nil {
		return fmt.Errorf("sum attachments of %s: %w", convID, err)
	}
	var count int
	var used int64
	if len(usage) == 1 {
		count, used = usage[0].Count, usage[0].Sum
	}
	if count >= maxAttachmentsPerConversation || used+size > s.opts.MaxConversationAttachmentBytes {
		return apierr.New(connect.CodeResourceExhausted, "ATTACHMENT_QUOTA_EXCEEDED",
			fmt.Sprintf("this conversation already holds %d attachments of %d bytes together; the limit is %d attachments and %d bytes",
				count, used, maxAttachmentsPerConversation, s.opts.MaxConversationAttachmentBytes))
	}
	return nil
}

// checkContent enforces the size limit, the type allowlist, that the
// content is what its type says, and the checksum.
func (s *Service) checkContent(req *parleyv1.UploadAttachmentRequest) error {
	content := req.GetContent()
	if len(content) > s.opts.MaxAttachmentBytes {
		return apierr.New(connect.CodeInvalidArgument, "ATTACHMENT_TOO_LARGE",
			fmt.Sprintf("the attachment is %d bytes; the limit is %d bytes", len(content), s.opts.MaxAttachmentBytes))
	}
	declared, _, err := mime.ParseMediaType(req.GetContentType())
	if err != nil || declared != req.GetContentType() {
		return apierr.New(connect.CodeInvalidArgument, "INVALID_CONTENT_TYPE",
			fmt.Sprintf("content_type %q is not a bare lowercase media type such as image/png", req.GetContentType()))
	}
	if !slices.Contains(s.opts.AttachmentTypes, declared) {
		return apierr.New(connect.CodeInvalidArgument, "CONTENT_TYPE_NOT_ALLOWED",
			fmt.Sprintf("content_type %s is not allowed; allowed: %s", declared, strings.Join(s.opts.AttachmentTypes, ", ")))
	}
	if slices.Contains(sniffable, declared) {
		sniffed, _, _ := mime.ParseMediaType(http.DetectContentType(content))
		if sniffed != declared {
			return apierr.New(connect.CodeInvalidArgument, "CONTENT_TYPE_MISMATCH",
				fmt.Sprintf("the content is %s, not the declared %s", sniffed, declared))
		}
	}
	sum := sha256.Sum256(content)
	if got := hex.EncodeToString(sum[:]); got != req.GetSha256() {
		return apierr.New(connect.CodeInvalidArgument, "CHECKSUM_MISMATCH",
			fmt.Sprintf("the content's sha256 is %s, not %s: it was changed or cut short on the way; upload it again", got, req.GetSha256()))
	}
	return nil
}

// GetAttachment returns an attachment to those who may read its
// conversation. Permission comes before existence: an unknown id and a
// foreign one get the same answer (admins learn NotFound).
func (s *Service) GetAttachment(ctx context.Context, req *parleyv1.GetAttachmentRequest) (*parleyv1.GetAttachmentResponse, error) {
	p := auth.FromContext(ctx)
	id := chatlog.ParseID(req.GetAttachmentId())
	a, err := s.db.Attachment.Get(ctx, id)
	if ent.IsNotFound(err) {
		if p.Role == auth.RoleAdmin {
			return nil, apierr.New(connect.CodeNotFound, "ATTACHMENT_NOT_FOUND", fmt.Sprintf("attachment %s does not exist", id))
		}
		return nil, apierr.New(connect.CodePermissionDenied, "ATTACHMENT_ACCESS_DENIED", fmt.Sprintf("you have no access to attachment %s", id))
	}
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("load attachment %s: %w", id, err))
	}
	conv, err := chatlog.Authorize(ctx, s.db.Client, p, a.ConversationID, chatlog.Read)
	if err != nil {
		if connect.CodeOf(err) == connect.CodePermissionDenied {
			return nil, apierr.New(connect.CodePermissionDenied, "ATTACHMENT_ACCESS_DENIED", fmt.Sprintf("you have no access to attachment %s", id))
		}
		return nil, err
	}
	// An agent who handed the chat over reads what came before they left.
	if end, leftAt, err := chatlog.HistoryEnd(ctx, s.db.Client, p, conv); err != nil {
		return nil, err
	} else if end < conv.LastSeq && (leftAt.IsZero() || a.CreatedAt.After(leftAt)) {
		return nil, apierr.New(connect.CodePermissionDenied, "ATTACHMENT_ACCESS_DENIED", fmt.Sprintf("you have no access to attachment %s", id))
	}
	return &parleyv1.GetAttachmentResponse{Attachment: attachmentToProto(a), Content: a.Content}, nil
}

// attachmentToProto converts an attachment's metadata.
func attachmentToProto(a *ent.Attachment) *parleyv1.Attachment {
	who := chatlog.Sender{Role: event.SenderRole(a.UploaderRole), ID: a.UploaderID, Name: a.UploaderName}
	return &parleyv1.Attachment{
		Id:             a.ID.String(),
		ConversationId: a.ConversationID.String(),
		Filename:       a.Filename,
		ContentType:    a.ContentType,
		SizeBytes:      a.Size,
		Sha256:         a.Sha256,
		Uploader:       who.Participant(),
		CreateTime:     timestamppb.New(a.CreatedAt),
	}
}
