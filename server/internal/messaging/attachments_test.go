package messaging_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/png"
	"math/rand/v2"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/servertest"
)

func pngImage(t *testing.T, side int) []byte {
	t.Helper()
	var buf bytes.Buffer
	img := image.NewRGBA(image.Rect(0, 0, side, side))
	// Noise, so the PNG does not compress below its pixel size.
	rng := rand.New(rand.NewPCG(uint64(side), 7))
	for i := range img.Pix {
		img.Pix[i] = byte(rng.Uint32())
	}
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func upload(filename, contentType string, content []byte) *parleyv1.UploadAttachmentRequest {
	sum := sha256.Sum256(content)
	return &parleyv1.UploadAttachmentRequest{
		RequestId: uuid.NewString(), Filename: filename, ContentType: contentType, Content: content, Sha256: hex.EncodeToString(sum[:]),
	}
}

func TestAttachments(t *testing.T) {
	// The attachment limit is above the request limit: uploads get room
	// of their own, other requests do not.
	srv := servertest.Start(t, servertest.WithAppOptions(app.Options{MaxRequestBytes: 64 << 10, MaxAttachmentBytes: 256 << 10}))
	guest, convID := startChat(t, srv)
	fred := assign(t, srv, convID)
	ctx := context.Background()
	img := pngImage(t, 200) // > 64 KiB, < 256 KiB
	if len(img) < 64<<10 || len(img) > 256<<10 {
		t.Fatalf("test image is %d bytes", len(img))
	}

	req := upload("receipt.png", "image/png", img)
	req.ConversationId = convID
	up, err := guest.Messaging.UploadAttachment(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	a := up.GetAttachment()
	if a.GetSizeBytes() != int64(len(img)) || a.GetSha256() != req.GetSha256() || a.GetContentType() != "image/png" {
		t.Fatalf("uploaded %v", a)
	}
	// A retried upload returns the same attachment, not a second copy.
	again, err := guest.Messaging.UploadAttachment(ctx, req)
	if err != nil || again.GetAttachment().GetId() != a.GetId() {
		t.Fatalf("retried upload: %v, %v", again, err)
	}

	// A message references it; the agent sees it and downloads the same bytes.
	sent, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{
		ConversationId: convID, ClientMessageId: "with-receipt", AttachmentIds: []string{a.GetId()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := sent.GetEvent().GetMessagePosted().GetAttachments(); len(got) != 1 || got[0].GetId() != a.GetId() || got[0].GetFilename() != "receipt.png" {
		t.Fatalf("message attachments = %v", got)
	}
	dl, err := fred.Messaging.GetAttachment(ctx, &parleyv1.GetAttachmentRequest{AttachmentId: a.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dl.GetContent(), img) {
		t.Fatal("downloaded content differs from the upload")
	}

	// Someone from another conversation may not download it, and cannot
	// tell it from an id that does not exist.
	stranger, strangerConv := startChat(t, srv)
	_, err = stranger.Messaging.GetAttachment(ctx, &parleyv1.GetAttachmentRequest{AttachmentId: a.GetId()})
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("stranger download: %v", err)
	}
	_, err = stranger.Messaging.GetAttachment(ctx, &parleyv1.GetAttachmentRequest{AttachmentId: uuid.NewString()})
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("unknown id: %v", err)
	}
	// Nor reference it in their own conversation.
	_, err = stranger.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{
		ConversationId: strangerConv, ClientMessageId: "steal", AttachmentIds: []string{a.GetId()},
	})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || apierr.Reason(err) != "ATTACHMENT_NOT_AVAILABLE" {
		t.Fatalf("referencing another conversation's attachment: %v", err)
	}
}

func TestAttachmentChecks(t *testing.T) {
	srv := servertest.Start(t, servertest.WithAppOptions(app.Options{MaxAttachmentBytes: 4 << 10}))
	guest, convID := startChat(t, srv)
	ctx := context.Background()
	small := pngImage(t, 4)
	corrupted := upload("a.png", "image/png", small)
	corrupted.Content = append([]byte(nil), small[:len(small)-1]...)
	tests := []struct {
		name   string
		req    *parleyv1.UploadAttachmentRequest
		code   connect.Code
		reason string
	}{
		{"checksum mismatch", corrupted, connect.CodeInvalidArgument, "CHECKSUM_MISMATCH"},
		{"type not allowed", upload("a.zip", "application/zip", []byte("PK\x03\x04....")), connect.CodeInvalidArgument, "CONTENT_TYPE_NOT_ALLOWED"},
		{"content is not the declared type", upload("a.png", "image/png", []byte("just text, not an image")), connect.CodeInvalidArgument, "CONTENT_TYPE_MISMATCH"},
		{"type with parameters", upload("a.txt", "text/plain; charset=utf-8", []byte("hello")), connect.CodeInvalidArgument, "INVALID_CONTENT_TYPE"},
		{"over the attachment limit", upload("big.txt", "text/plain", []byte(strings.Repeat("x", 5<<10))), connect.CodeInvalidArgument, "ATTACHMENT_TOO_LARGE"},
		{"path in the filename", upload("../etc/passwd", "text/plain", []byte("hello")), connect.CodeInvalidArgument, ""},
		{"bad checksum format", func() *parleyv1.UploadAttachmentRequest {
			r := upload("a.txt", "text/plain", []byte("hello"))
			r.Sha256 = "ABC"
			return r
		}(), connect.CodeInvalidArgument, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.ConversationId = convID
			_, err := guest.Messaging.UploadAttachment(ctx, tt.req)
			if connect.CodeOf(err) != tt.code || (tt.reason != "" && apierr.Reason(err) != tt.reason) {
				t.Fatalf("got %v (reason %q), want %v %s", err, apierr.Reason(err), tt.code, tt.reason)
			}
		})
	}
	if n, err := srv.DB.Attachment.Query().Count(ctx); err != nil || n != 0 {
		t.Fatalf("rejected uploads stored %d attachments (%v)", n, err)
	}
	// Plain text and PDF pass the content check.
	for _, ok := range []*parleyv1.UploadAttachmentRequest{
		upload("notes.txt", "text/plain", []byte("order 1042")),
		upload("invoice.pdf", "application/pdf", []byte("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")),
	} {
		ok.ConversationId = convID
		if _, err := guest.Messaging.UploadAttachment(ctx, ok); err != nil {
			t.Fatalf("%s: %v", ok.GetFilename(), err)
		}
	}
	// Admins do not upload into conversations.
	req := upload("a.txt", "text/plain", []byte("hi"))
	req.ConversationId = convID
	if _, err := srv.Client(parley.Connect, servertest.AdminToken).Messaging.UploadAttachment(ctx, req); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("admin upload: %v", err)
	}
}
