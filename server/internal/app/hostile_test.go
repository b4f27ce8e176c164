package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/parleyhq/parley/clients/go/parley"
	"github.com/parleyhq/parley/ent/interaction"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/apierr"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/bootstrap"
	"github.com/parleyhq/parley/server/internal/clock"
	"github.com/parleyhq/parley/server/internal/servertest"
	"github.com/parleyhq/parley/server/internal/session"
	"github.com/parleyhq/parley/server/internal/store/storetest"
)

var hostileT0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

func wantReason(t *testing.T, what string, err error, code connect.Code, reason string) {
	t.Helper()
	if connect.CodeOf(err) != code || apierr.Reason(err) != reason {
		t.Fatalf("%s: got %v (reason %q), want %v %s", what, err, apierr.Reason(err), code, reason)
	}
}

// TestStaffCannotObtainAGuestToken: a guest's request id is the secret a
// StartGuestChat retry proves, and nobody else ever sees it; a retry gets
// the same token back (never a second one), counts against the guest
// limits, and gets nothing once the chat closed or the window passed.
func TestStaffCannotObtainAGuestToken(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0), servertest.WithBootstrap(func(f *bootstrap.File) {
		f.Settings.MaxGuestSessionsPerHourPerAddress = 4
	}))
	ctx := t.Context()
	anon := srv.Client(parley.Connect, "")
	form := &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "billing",
		FirstMessage: "I was charged twice.",
	}
	first, err := anon.Session.StartGuestChat(ctx, form)
	must(t, err)
	convID := first.GetConversation().GetId()

	// Everything staff can read about the chat: none of it holds the
	// request id, and no message shows another party's idempotency key.
	beth := srv.Client(parley.Connect, servertest.BethToken)
	admin := srv.Client(parley.Connect, servertest.AdminToken)
	var seen []proto.Message
	evs, err := beth.Messaging.ListEvents(ctx, &parleyv1.ListEventsRequest{ConversationId: convID})
	must(t, err)
	seen = append(seen, evs)
	queued, err := beth.Routing.ListQueuedConversations(ctx, &parleyv1.ListQueuedConversationsRequest{})
	must(t, err)
	seen = append(seen, queued)
	got, err := admin.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: convID})
	must(t, err)
	seen = append(seen, got)
	setPresence(ctx, t, beth, parleyv1.Presence_PRESENCE_AVAILABLE)
	work := watchWork(ctx, t, beth)
	must(t, srv.App.Dispatch(ctx))
	offer := work.nextOffer(t)
	seen = append(seen, offer)
	for _, m := range seen {
		if text := prototext.Format(m); strings.Contains(text, form.GetRequestId()) {
			t.Fatalf("staff can read the guest's request id in %T:\n%s", m, text)
		}
	}
	for _, ev := range evs.GetEvents() {
		if id := ev.GetMessagePosted().GetClientMessageId(); id != "" {
			t.Fatalf("staff see a client_message_id %q of the guest's message", id)
		}
	}
	// Staff who copy the whole visible form still cannot start it again:
	// without the request id it is a new chat, with its own token.
	copied := proto.Clone(form).(*parleyv1.StartGuestChatRequest)
	copied.RequestId = uuid.NewString()
	other, err := anon.Session.StartGuestChat(ctx, copied)
	must(t, err)
	if other.GetConversation().GetId() == convID {
		t.Fatal("a copied form opened the guest's conversation")
	}

	// The guest's own retry returns the same token: nothing more is handed out.
	retry, err := anon.Session.StartGuestChat(ctx, form)
	must(t, err)
	if retry.GetGuestToken() != first.GetGuestToken() || retry.GetConversation().GetId() != convID {
		t.Fatalf("retry returned another token or conversation")
	}
	// Retries count against the per-address limit (4: start, copy, retry, and one more).
	_, err = anon.Session.StartGuestChat(ctx, form)
	must(t, err)
	_, err = anon.Session.StartGuestChat(ctx, form)
	wantReason(t, "fifth start from one address", err, connect.CodeResourceExhausted, "GUEST_SESSION_LIMIT_ADDRESS")

	// A request id that is not a random UUID is refused.
	weak := proto.Clone(form).(*parleyv1.StartGuestChatRequest)
	weak.RequestId = uuid.Must(uuid.NewV7()).String()
	_, err = anon.Session.StartGuestChat(ctx, weak)
	wantReason(t, "version 7 request id", err, connect.CodeInvalidArgument, "REQUEST_ID_NOT_RANDOM")
}

// TestGuestStartRetryEnds: a closed chat never yields a token, and past the
// retry window neither does an open one; the sealed token is then erased.
func TestGuestStartRetryEnds(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0))
	ctx := t.Context()
	anon := srv.Client(parley.Connect, "")
	start := func() (*parleyv1.StartGuestChatRequest, *parleyv1.StartGuestChatResponse) {
		form := &parleyv1.StartGuestChatRequest{RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "order"}
		resp, err := anon.Session.StartGuestChat(ctx, form)
		must(t, err)
		return form, resp
	}
	closedForm, closed := start()
	openForm, opened := start()
	// The request id has one spelling: the same UUID in capitals is the
	// same request, not a second chat with a second token.
	upper := proto.Clone(openForm).(*parleyv1.StartGuestChatRequest)
	upper.RequestId = strings.ToUpper(upper.GetRequestId())
	again, err := anon.Session.StartGuestChat(ctx, upper)
	must(t, err)
	if again.GetGuestToken() != opened.GetGuestToken() || again.GetConversation().GetId() != opened.GetConversation().GetId() {
		t.Fatal("the request id in capitals started another chat")
	}
	_, err = srv.Client(parley.Connect, closed.GetGuestToken()).Session.CloseConversation(ctx,
		&parleyv1.CloseConversationRequest{ConversationId: closed.GetConversation().GetId()})
	must(t, err)
	_, err = anon.Session.StartGuestChat(ctx, closedForm)
	wantReason(t, "retry of a closed chat", err, connect.CodeFailedPrecondition, "CONVERSATION_CLOSED")

	srv.Clock.Advance(11 * time.Minute)
	_, err = anon.Session.StartGuestChat(ctx, openForm)
	wantReason(t, "retry past the window", err, connect.CodeFailedPrecondition, "RETRY_WINDOW_PASSED")
	if _, err := srv.App.SweepRetention(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.DB.Interaction.Query().Where(interaction.GuestTokenSealedNotNil()).Count(ctx); err != nil || n != 0 {
		t.Fatalf("%d sealed guest tokens kept past the retry window (%v)", n, err)
	}
}

// streamItems collects a Subscribe stream's events and how it ended.
type streamItems struct {
	events chan *parleyv1.Event
	end    chan error
}

func follow(ctx context.Context, t *testing.T, c *parley.Client, convID string) *streamItems {
	t.Helper()
	stream, err := c.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID})
	must(t, err)
	s := &streamItems{events: make(chan *parleyv1.Event, 1000), end: make(chan error, 1)}
	go func() {
		for {
			resp, err := stream.Receive()
			if err != nil {
				s.end <- err
				return
			}
			if e := resp.GetEvent(); e != nil {
				s.events <- e
			}
		}
	}()
	return s
}

// upTo waits until the stream delivered seq.
func (s *streamItems) upTo(t *testing.T, seq int64) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case e := <-s.events:
			if e.GetSeq() >= seq {
				return
			}
		case err := <-s.end:
			t.Fatalf("stream ended early: %v", err)
		case <-deadline:
			t.Fatalf("seq %d never arrived", seq)
		}
	}
}

// endsBefore waits for the stream to end with code and reason, and fails
// if it delivered any event after seq first.
func (s *streamItems) endsBefore(t *testing.T, seq int64, code connect.Code, reason string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case e := <-s.events:
			if e.GetSeq() > seq {
				t.Fatalf("the stream delivered seq %d (%v) after access ended", e.GetSeq(), e)
			}
		case err := <-s.end:
			wantReason(t, "stream end", err, code, reason)
			return
		case <-deadline:
			t.Fatal("the stream did not end")
		}
	}
}

// demoAgent returns the demo agent named name, as an admin sees it.
func demoAgent(ctx context.Context, t *testing.T, srv *servertest.Server, name string) *parleyv1.Agent {
	t.Helper()
	agents, err := srv.Client(parley.Connect, servertest.AdminToken).Routing.ListAgents(ctx, &parleyv1.ListAgentsRequest{})
	must(t, err)
	for _, a := range agents.GetAgents() {
		if a.GetDisplayName() == name {
			return a
		}
	}
	t.Fatalf("no agent %s", name)
	return nil
}

// demoQueue returns the id of the demo queue named name.
func demoQueue(ctx context.Context, t *testing.T, srv *servertest.Server, name string) string {
	t.Helper()
	queues, err := srv.Client(parley.Connect, servertest.AdminToken).Routing.ListQueues(ctx, &parleyv1.ListQueuesRequest{})
	must(t, err)
	for _, q := range queues.GetQueues() {
		if q.GetDisplayName() == name {
			return q.GetId()
		}
	}
	t.Fatalf("no queue %s", name)
	return ""
}

// issueAgentToken issues a fresh token for the demo agent named name.
func issueAgentToken(ctx context.Context, t *testing.T, srv *servertest.Server, name string) (token, tokenID string) {
	t.Helper()
	resp, err := srv.Client(parley.Connect, servertest.AdminToken).Access.IssueToken(ctx, &parleyv1.IssueTokenRequest{
		Role: parleyv1.StaffRole_STAFF_ROLE_AGENT, AgentId: demoAgent(ctx, t, srv, name).GetId(), Label: "test",
	})
	must(t, err)
	return resp.GetToken(), resp.GetInfo().GetId()
}

// twoReplicas starts two servers on one database, as two replicas with no
// wake-up crossing between them, on one fake clock (advance it by
// app.DefaultHeartbeat to make their streams look again).
func twoReplicas(t *testing.T) (a, b *servertest.Server) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "shared.db")
	clk := clock.NewFake(hostileT0)
	return servertest.Start(t, servertest.WithDBFile(file), servertest.WithClock(clk)),
		servertest.Start(t, servertest.WithDBFile(file), servertest.WithClock(clk))
}

// TestRevocationEndsOpenStreams: a revoked token's Subscribe and WatchWork
// streams end before anything more is sent, and the agent's work stream
// lease is no longer renewed, so offers stop going to them.
func TestRevocationEndsOpenStreams(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0))
	ctx := t.Context()
	token, tokenID := issueAgentToken(ctx, t, srv, "Fred Luddy")
	fred := srv.Client(parley.GRPC, token)
	setPresence(ctx, t, fred, parleyv1.Presence_PRESENCE_AVAILABLE)
	work, err := fred.Routing.WatchWork(ctx, &parleyv1.WatchWorkRequest{})
	must(t, err)
	guest, convID := startGuestChat(ctx, t, srv, "product")
	must(t, srv.App.Dispatch(ctx))
	var offer *parleyv1.Offer
	for offer == nil {
		resp, err := work.Receive()
		must(t, err)
		offer = resp.GetOffer()
	}
	_, err = fred.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: offer.GetId()})
	must(t, err)
	conv, err := guest.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: convID})
	must(t, err)
	sub := follow(ctx, t, fred, convID)
	sub.upTo(t, conv.GetConversation().GetLastSeq())

	_, err = srv.Client(parley.Connect, servertest.AdminToken).Access.RevokeToken(ctx, &parleyv1.RevokeTokenRequest{TokenId: tokenID})
	must(t, err)
	sent, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "after", Text: "my card number is ..."})
	must(t, err)
	sub.endsBefore(t, sent.GetEvent().GetSeq()-1, connect.CodeUnauthenticated, "TOKEN_REVOKED")
	for {
		resp, err := work.Receive()
		if err != nil {
			wantReason(t, "work stream end", err, connect.CodeUnauthenticated, "TOKEN_REVOKED")
			break
		}
		if resp.GetOffer() != nil {
			t.Fatalf("a revoked agent was sent an offer: %v", resp.GetOffer())
		}
	}

	// No replica renews the lease any more: once the grace period passes,
	// Fred is offline and a new chat in his queue waits for someone else.
	srv.Clock.Advance(61 * time.Second)
	must(t, srv.App.Dispatch(ctx))
	if presence := demoAgent(ctx, t, srv, "Fred Luddy").GetPresence(); presence != parleyv1.Presence_PRESENCE_OFFLINE {
		t.Fatalf("the revoked agent is still %v after the grace period", presence)
	}
}

// startGuestChat starts a guest chat about issue and returns the guest's
// client and the conversation id.
func startGuestChat(ctx context.Context, t *testing.T, srv *servertest.Server, issue string) (*parley.Client, string) {
	t.Helper()
	resp, err := srv.Client(parley.Connect, "").Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: issue, FirstMessage: "hello",
	})
	must(t, err)
	return srv.Client(parley.Connect, resp.GetGuestToken()), resp.GetConversation().GetId()
}

// TestAgentWhoLostAChatStopsReceivingIt: an agent following a chat that
// waited in their queue stops receiving it once a colleague takes it.
func TestAgentWhoLostAChatStopsReceivingIt(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0))
	ctx := t.Context()
	guest, convID := startGuestChat(ctx, t, srv, "billing") // Billing: Beth and Fred
	fred := srv.Client(parley.Connect, servertest.FredToken)
	conv, err := fred.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: convID})
	must(t, err)
	sub := follow(ctx, t, fred, convID)
	sub.upTo(t, conv.GetConversation().GetLastSeq())

	beth := srv.Client(parley.Connect, servertest.BethToken)
	setPresence(ctx, t, beth, parleyv1.Presence_PRESENCE_AVAILABLE)
	work := watchWork(ctx, t, beth)
	must(t, srv.App.Dispatch(ctx))
	_, err = beth.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: work.nextOffer(t).GetId()})
	must(t, err)
	_, err = guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "1", Text: "for Beth only"})
	must(t, err)
	sub.endsBefore(t, conv.GetConversation().GetLastSeq(), connect.CodePermissionDenied, "CONVERSATION_ACCESS_DENIED")
}

// TestExpiredCredentialEndsStream: a customer's stream ends when its JWT
// expires, before the next event is sent, while the customer's other device
// with a fresh token goes on.
func TestExpiredCredentialEndsStream(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0))
	ctx := t.Context()
	short := jwt.MapClaims{
		"iss": servertest.DemoIssuer, "aud": servertest.DemoAudience, "sub": "c-1", "name": "Cy",
		"iat": hostileT0.Unix(), "exp": hostileT0.Add(time.Minute).Unix(),
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, short).SignedString([]byte(servertest.DemoSecret))
	must(t, err)
	phone := srv.Client(parley.GRPC, signed)
	started, err := phone.Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{RequestId: uuid.NewString(), IssueType: "order"})
	must(t, err)
	convID := started.GetConversation().GetId()
	sub := follow(ctx, t, phone, convID)
	sub.upTo(t, started.GetConversation().GetLastSeq())

	srv.Clock.Advance(2 * time.Minute)
	laptop := srv.Client(parley.Connect, srv.CustomerToken(t, "c-1", "Cy", ""))
	_, err = laptop.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "l-1", Text: "from the laptop"})
	must(t, err)
	sub.endsBefore(t, started.GetConversation().GetLastSeq(), connect.CodeUnauthenticated, "TOKEN_EXPIRED")
}

// TestClaimedGuestStreamEnds: once a signed-in customer claims a guest
// chat, the guest token's open stream ends before the claim is sent.
func TestClaimedGuestStreamEnds(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0))
	ctx := t.Context()
	resp, err := srv.Client(parley.Connect, "").Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "order",
	})
	must(t, err)
	convID := resp.GetConversation().GetId()
	sub := follow(ctx, t, srv.Client(parley.Connect, resp.GetGuestToken()), convID)
	sub.upTo(t, resp.GetConversation().GetLastSeq())
	customer := parley.New(srv.URL, parley.WithToken(srv.CustomerToken(t, "ada", "Ada", "ada@example.com")),
		parley.WithHTTPClient(&http.Client{Transport: headerTransport{http.Header{"Parley-Guest-Token": {resp.GetGuestToken()}}, parley.DefaultHTTPClient().Transport}}))
	_, err = customer.Session.ClaimGuestConversation(ctx, &parleyv1.ClaimGuestConversationRequest{ConversationId: convID})
	must(t, err)
	sub.endsBefore(t, resp.GetConversation().GetLastSeq(), connect.CodeUnauthenticated, "TOKEN_REVOKED")
}

// TestEveryParticipantWriteIsLimited: typing, receipts and uploads from one
// participant are rate limited like messages.
func TestEveryParticipantWriteIsLimited(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0), servertest.WithAppOptions(app.Options{SendRate: 1, SendBurst: 3}))
	ctx := t.Context()
	guest, convID := startGuestChat(ctx, t, srv, "order")
	other, otherID := startGuestChat(ctx, t, srv, "order")
	spam := func(what string, burst int, call func(c *parley.Client, conv string, i int) error) {
		t.Helper()
		for i := range burst {
			if err := call(guest, convID, i); err != nil {
				t.Fatalf("%s %d within the burst: %v", what, i, err)
			}
		}
		err := call(guest, convID, burst)
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Fatalf("%s beyond the burst: %v, want ResourceExhausted", what, err)
		}
		if err := call(other, otherID, 0); err != nil {
			t.Fatalf("%s by another guest: %v", what, err)
		}
	}
	spam("SetTyping", app.DefaultWriteLimits[app.ClassSignals].Burst, func(c *parley.Client, conv string, i int) error {
		_, err := c.Messaging.SetTyping(ctx, &parleyv1.SetTypingRequest{ConversationId: conv, Typing: i%2 == 0})
		return err
	})
	spam("MarkRead", app.DefaultWriteLimits[app.ClassReceipts].Burst, func(c *parley.Client, conv string, i int) error {
		_, err := c.Messaging.MarkRead(ctx, &parleyv1.MarkReadRequest{ConversationId: conv, RequestId: uuid.NewString(), ReadSeq: 1})
		return err
	})
	spam("UploadAttachment", 3, func(c *parley.Client, conv string, i int) error {
		_, err := c.Messaging.UploadAttachment(ctx, textAttachment(conv, strings.Repeat("x", 10)))
		return err
	})

	// Opening an agent's work stream leases the agent in the store: it is
	// limited too.
	fred := srv.Client(parley.Connect, servertest.FredToken)
	for range app.DefaultWriteLimits[app.ClassWatch].Burst {
		watchWork(ctx, t, fred)
	}
	stream, err := fred.Routing.WatchWork(ctx, &parleyv1.WatchWorkRequest{})
	if err == nil {
		_, err = stream.Receive()
	}
	wantReason(t, "WatchWork beyond the burst", err, connect.CodeResourceExhausted, "RATE_LIMITED")
}

// TestUploadLimitIsSharedByReplicas: on PostgreSQL a guest's uploads spend
// from one bucket whichever replica takes them, in the upload's own
// transaction (not a second one the store refuses, which fell back to a
// bucket per replica).
func TestUploadLimitIsSharedByReplicas(t *testing.T) {
	if storetest.PostgresURL() == "" {
		t.Skip("replicas share a store on PostgreSQL only; set PARLEY_TEST_POSTGRES")
	}
	file := filepath.Join(t.TempDir(), "shared.db")
	clk := clock.NewFake(hostileT0)
	opts := servertest.WithAppOptions(app.Options{SendRate: 1, SendBurst: 4})
	a := servertest.Start(t, servertest.WithDBFile(file), servertest.WithClock(clk), opts)
	b := servertest.Start(t, servertest.WithDBFile(file), servertest.WithClock(clk), opts)
	ctx := t.Context()
	resp, err := a.Client(parley.Connect, "").Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "order", FirstMessage: "hello",
	})
	must(t, err)
	convID := resp.GetConversation().GetId()
	guestA, guestB := a.Client(parley.Connect, resp.GetGuestToken()), b.Client(parley.Connect, resp.GetGuestToken())
	for i, c := range []*parley.Client{guestA, guestB, guestA, guestB} {
		if _, err := c.Messaging.UploadAttachment(ctx, textAttachment(convID, "note")); err != nil {
			t.Fatalf("upload %d within the burst: %v", i, err)
		}
	}
	for _, c := range []*parley.Client{guestA, guestB} {
		_, err := c.Messaging.UploadAttachment(ctx, textAttachment(convID, "note"))
		wantReason(t, "upload beyond the burst shared by both replicas", err, connect.CodeResourceExhausted, "SEND_RATE_LIMITED")
	}
	for _, srv := range []*servertest.Server{a, b} {
		if log := srv.Log.String(); strings.Contains(log, "cannot be reached") {
			t.Fatalf("a replica limited per replica:\n%s", log)
		}
	}
}

func textAttachment(convID, text string) *parleyv1.UploadAttachmentRequest {
	return &parleyv1.UploadAttachmentRequest{
		ConversationId: convID, RequestId: uuid.NewString(), Filename: "note.txt", ContentType: "text/plain",
		Content: []byte(text), Sha256: sha256Hex([]byte(text)),
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestAttachmentQuotaAndRetention: one conversation's attachments have a
// quota, and uploads no message references, old idempotency keys and long
// expired or revoked tokens are deleted after their retention.
func TestAttachmentQuotaAndRetention(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0), servertest.WithAppOptions(app.Options{
		MaxConversationAttachmentBytes: 3000,
	}))
	ctx := t.Context()
	guest, convID := startGuestChat(ctx, t, srv, "order")
	kept, err := guest.Messaging.UploadAttachment(ctx, textAttachment(convID, strings.Repeat("k", 1000)))
	must(t, err)
	dropped, err := guest.Messaging.UploadAttachment(ctx, textAttachment(convID, strings.Repeat("d", 1000)))
	must(t, err)
	_, err = guest.Messaging.UploadAttachment(ctx, textAttachment(convID, strings.Repeat("o", 1001)))
	wantReason(t, "upload past the quota", err, connect.CodeResourceExhausted, "ATTACHMENT_QUOTA_EXCEEDED")
	_, err = guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{
		ConversationId: convID, ClientMessageId: "m-1", AttachmentIds: []string{kept.GetAttachment().GetId()},
	})
	must(t, err)
	_, err = guest.Messaging.MarkRead(ctx, &parleyv1.MarkReadRequest{ConversationId: convID, RequestId: uuid.NewString(), ReadSeq: 1})
	must(t, err)
	admin := srv.Client(parley.Connect, servertest.AdminToken)
	token, tokenID := issueAgentToken(ctx, t, srv, "Abel Tuter")
	_, err = admin.Access.RevokeToken(ctx, &parleyv1.RevokeTokenRequest{TokenId: tokenID})
	must(t, err)

	keys := func() int {
		n, err := srv.DB.IdempotencyKey.Query().Count(ctx)
		must(t, err)
		return n
	}
	if keys() == 0 {
		t.Fatal("no idempotency key was stored")
	}
	srv.Clock.Advance(25 * time.Hour)
	if _, err := srv.App.SweepRetention(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = admin.Messaging.GetAttachment(ctx, &parleyv1.GetAttachmentRequest{AttachmentId: dropped.GetAttachment().GetId()})
	wantReason(t, "unreferenced upload after its retention", err, connect.CodeNotFound, "ATTACHMENT_NOT_FOUND")
	if _, err := admin.Messaging.GetAttachment(ctx, &parleyv1.GetAttachmentRequest{AttachmentId: kept.GetAttachment().GetId()}); err != nil {
		t.Fatalf("a referenced attachment was deleted: %v", err)
	}
	if n := keys(); n != 0 {
		t.Fatalf("%d idempotency keys kept past their retention", n)
	}
	// The freed quota takes a new upload... from a guest whose token
	// (24 hours) has expired: it is refused, and once the token retention
	// has passed too, both tokens are gone from the store.
	_, err = guest.Messaging.UploadAttachment(ctx, textAttachment(convID, "late"))
	wantCode(t, err, connect.CodeUnauthenticated)
	srv.Clock.Advance(7 * 24 * time.Hour)
	if _, err := srv.App.SweepRetention(ctx); err != nil {
		t.Fatal(err)
	}
	tokens, err := admin.Access.ListTokens(ctx, &parleyv1.ListTokensRequest{})
	must(t, err)
	for _, info := range tokens.GetTokens() {
		if info.GetId() == tokenID {
			t.Fatal("a token revoked a week ago is still stored")
		}
	}
	stored, err := srv.DB.Token.Query().Count(ctx)
	must(t, err)
	if stored != len(tokens.GetTokens()) {
		t.Fatalf("%d tokens stored, %d staff tokens listed: expired guest tokens were kept", stored, len(tokens.GetTokens()))
	}
	_, err = srv.Client(parley.Connect, token).Routing.ListAssignedConversations(ctx, &parleyv1.ListAssignedConversationsRequest{})
	wantCode(t, err, connect.CodeUnauthenticated)
}

// TestBrowserAndHeaderHygiene: the Bearer scheme is case-insensitive, a
// browser origin that may not call is refused by the server (also after a
// site drops it), and every response says nosniff.
func TestBrowserAndHeaderHygiene(t *testing.T) {
	srv := servertest.Start(t)
	ctx := t.Context()
	for _, header := range []string{"bearer " + servertest.AdminToken, "BEARER   " + servertest.AdminToken, "Bearer\t" + servertest.AdminToken} {
		c := parley.New(srv.URL, parley.WithHTTPClient(&http.Client{Transport: headerTransport{http.Header{"Authorization": {header}}, parley.DefaultHTTPClient().Transport}}))
		_, err := c.Access.ListTokens(ctx, &parleyv1.ListTokensRequest{})
		if strings.Contains(header, "\t") {
			wantReason(t, "tab after the scheme", err, connect.CodeUnauthenticated, "MALFORMED_TOKEN")
			continue
		}
		if err != nil {
			t.Fatalf("Authorization %q: %v", strings.Fields(header)[0], err)
		}
	}

	admin := srv.Client(parley.Connect, servertest.AdminToken)
	site, err := admin.Access.CreateSite(ctx, &parleyv1.CreateSiteRequest{Site: &parleyv1.Site{DisplayName: "Shop", AllowedOrigins: []string{"https://shop.example.com"}}})
	must(t, err)
	var headers http.Header
	fromShop := fromOrigin(srv, "https://shop.example.com", &headers)
	startFromShop := func() error {
		_, err := fromShop.Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
			RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "order", SiteId: site.GetSite().GetId(),
		})
		return err
	}
	must(t, startFromShop())
	if headers.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("a response lacks X-Content-Type-Options: nosniff: %v", headers)
	}
	_, err = admin.Access.UpdateSite(ctx, &parleyv1.UpdateSiteRequest{Site: &parleyv1.Site{
		Id: site.GetSite().GetId(), DisplayName: "Shop", AllowedOrigins: []string{"https://www.shop.example.com"},
	}})
	must(t, err)
	wantReason(t, "start from a removed origin", startFromShop(), connect.CodePermissionDenied, "ORIGIN_NOT_ALLOWED")
	if headers.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("an error response lacks X-Content-Type-Options: nosniff: %v", headers)
	}

	// What no handler of Parley's writes (the router's redirect of an
	// unclean path) has the strict default policy; the pages keep theirs.
	for path, want := range map[string]string{
		"/messenger/../workspace/": "default-src 'none'; frame-ancestors 'none'",
		"//evil.example/":          "default-src 'none'",
		"/workspace/":              "script-src 'self'",
		"/no-such-page":            "default-src 'none'",
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		must(t, err)
		req.URL.Opaque = path // sent as written, not cleaned
		resp, err := http.DefaultTransport.RoundTrip(req)
		must(t, err)
		resp.Body.Close()
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, want) || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: %d with Content-Security-Policy %q, want it to hold %q (and nosniff)", path, resp.StatusCode, csp, want)
		}
	}
}

// TestRevocationOnAnotherReplica: two servers on one database, as two
// replicas. A token revoked on one ends its stream on the other before
// that stream sends anything more, though no wake-up crosses between them
// (the stream finds it at its next heartbeat, before it reads the log).
func TestRevocationOnAnotherReplica(t *testing.T) {
	a, b := twoReplicas(t)
	ctx := t.Context()
	token, tokenID := issueAgentToken(ctx, t, a, "Fred Luddy")
	guest, convID := startGuestChat(ctx, t, a, "product")
	conv, err := guest.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: convID})
	must(t, err)
	sub := follow(ctx, t, b.Client(parley.GRPC, token), convID) // Fred reads the waiting chat on replica b
	sub.upTo(t, conv.GetConversation().GetLastSeq())

	_, err = a.Client(parley.Connect, servertest.AdminToken).Access.RevokeToken(ctx, &parleyv1.RevokeTokenRequest{TokenId: tokenID})
	must(t, err)
	_, err = guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "1", Text: "after the revocation"})
	must(t, err)
	// The stream armed its heartbeat before it sent what it delivered.
	b.Clock.Advance(app.DefaultHeartbeat)
	sub.endsBefore(t, conv.GetConversation().GetLastSeq(), connect.CodeUnauthenticated, "TOKEN_REVOKED")
}

// slowReader is a gRPC client with a 64 KiB HTTP/2 window, as a slow phone
// would have: a stream it does not read fills the window and stalls.
func slowReader(srv *servertest.Server, token string) *parley.Client {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	return parley.New(srv.URL, parley.WithToken(token), parley.WithProtocol(parley.GRPC), parley.WithHTTPClient(&http.Client{Transport: &http.Transport{
		Protocols: protocols,
		HTTP2:     &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10, MaxReceiveBufferPerConnection: 64 << 10},
	}}))
}

// TestRevocationStopsABacklog: a subscriber reading a long backlog slowly
// gets nothing more once its token is revoked on this replica than what
// was already on its way (within its HTTP/2 flow-control window), not the
// rest of the batch the stream had read from the store.
func TestRevocationStopsABacklog(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0), servertest.WithAppOptions(app.Options{SendRate: 1e6, SendBurst: 1e6}))
	ctx := t.Context()
	token, tokenID := issueAgentToken(ctx, t, srv, "Fred Luddy")
	fred := srv.Client(parley.Connect, token)
	setPresence(ctx, t, fred, parleyv1.Presence_PRESENCE_AVAILABLE)
	work := watchWork(ctx, t, fred)
	guest, convID := startGuestChat(ctx, t, srv, "product")
	must(t, srv.App.Dispatch(ctx))
	_, err := fred.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: work.nextOffer(t).GetId()})
	must(t, err)
	sendBacklog(ctx, t, guest, convID, 300)
	stream := slowSubscription(ctx, t, srv, token, convID)
	_, err = srv.Client(parley.Connect, servertest.AdminToken).Access.RevokeToken(ctx, &parleyv1.RevokeTokenRequest{TokenId: tokenID})
	must(t, err)
	after := 0
	for {
		resp, err := stream.Receive()
		if err != nil {
			wantReason(t, "slow stream end", err, connect.CodeUnauthenticated, "TOKEN_REVOKED")
			break
		}
		if resp.GetEvent() != nil {
			after++
		}
	}
	// 64 KiB hold 16 of these events; allow for the server's write buffer.
	if after > 32 {
		t.Fatalf("%d events of the backlog reached the reader after its token was revoked", after)
	}
	t.Logf("%d events were already on their way", after)
}

// TestFormerHolderCannotFollow: an agent who handed a chat over keeps its
// history but cannot follow it live again by subscribing anew.
func TestFormerHolderCannotFollow(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0))
	ctx := t.Context()
	guest, convID := heldByBeth(ctx, t, srv)
	beth := srv.Client(parley.Connect, servertest.BethToken)
	fred := srv.Client(parley.Connect, servertest.FredToken)
	kase, err := beth.Cases.CreateCaseForGuest(ctx, &parleyv1.CreateCaseForGuestRequest{ConversationId: convID, RequestId: uuid.NewString(), ShortDescription: "billing"})
	must(t, err)
	setPresence(ctx, t, beth, parleyv1.Presence_PRESENCE_AWAY)
	setPresence(ctx, t, fred, parleyv1.Presence_PRESENCE_AVAILABLE)
	transfer, err := beth.Routing.TransferConversation(ctx, &parleyv1.TransferConversationRequest{
		ConversationId: convID, RequestId: uuid.NewString(),
		Target: &parleyv1.TransferConversationRequest_AgentId{AgentId: demoAgent(ctx, t, srv, "Fred Luddy").GetId()},
	})
	must(t, err)
	_, err = fred.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: transfer.GetOfferId()})
	must(t, err)

	stream, err := beth.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID})
	if err == nil {
		_, err = stream.Receive()
	}
	wantReason(t, "Beth subscribing after the transfer", err, connect.CodePermissionDenied, "NO_LONGER_HOLDING")
	// She keeps the history up to when she left it, and nothing after.
	held, err := beth.Messaging.ListEvents(ctx, &parleyv1.ListEventsRequest{ConversationId: convID})
	must(t, err)
	if len(held.GetEvents()) == 0 {
		t.Fatal("Beth lost the history of a chat she held")
	}
	secret, err := guest.Messaging.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: convID, ClientMessageId: "s", Text: "for Fred only"})
	must(t, err)
	_, err = fred.Messaging.MarkRead(ctx, &parleyv1.MarkReadRequest{ConversationId: convID, RequestId: uuid.NewString(), ReadSeq: secret.GetEvent().GetSeq()})
	must(t, err)
	transcript, err := beth.Cases.GetCase(ctx, &parleyv1.GetCaseRequest{CaseId: kase.GetCase().GetId()})
	must(t, err)
	for _, ev := range transcript.GetTranscript() {
		if ev.GetSeq() >= secret.GetEvent().GetSeq() {
			t.Fatalf("Beth's case transcript holds seq %d (%v), said after she handed the chat over", ev.GetSeq(), ev)
		}
	}
	cursors, err := beth.Messaging.ListReadCursors(ctx, &parleyv1.ListReadCursorsRequest{ConversationId: convID})
	must(t, err)
	for _, rc := range cursors.GetReadCursors() {
		if rc.GetReadSeq() >= secret.GetEvent().GetSeq() {
			t.Fatalf("Beth sees a read cursor at seq %d, past when she left", rc.GetReadSeq())
		}
	}
	for _, newest := range []bool{false, true} {
		page, err := beth.Messaging.ListEvents(ctx, &parleyv1.ListEventsRequest{ConversationId: convID, NewestFirst: newest})
		must(t, err)
		for _, ev := range page.GetEvents() {
			if ev.GetSeq() >= secret.GetEvent().GetSeq() || ev.GetParticipantJoined().GetParticipant().GetDisplayName() == "Fred Luddy" {
				t.Fatalf("Beth reads seq %d (%v) of a chat she handed over (newest first: %v)", ev.GetSeq(), ev, newest)
			}
		}
	}
	// Once it is closed, its whole log is history again, stream included.
	_, err = guest.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: convID})
	must(t, err)
	closed := subscribe(ctx, t, beth, convID, 0)
	if last := closed.drain(t); last.GetConversationClosed() == nil {
		t.Fatalf("Beth's stream of the closed chat ended with %v", last)
	}
}

// TestAgentRemovedFromQueueGetsNoSignals: an agent following a chat that
// waits in their queue, removed from that queue, gets no more of its typing
// signals (no log event tells the stream); the stream ends instead.
func TestAgentRemovedFromQueueGetsNoSignals(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0))
	ctx := t.Context()
	guest, convID := startGuestChat(ctx, t, srv, "product") // Product Support: Fred and Abel
	abel := srv.Client(parley.Connect, servertest.AbelToken)
	stream, err := abel.Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID})
	must(t, err)
	conv, err := guest.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: convID})
	must(t, err)
	for seen := int64(0); seen < conv.GetConversation().GetLastSeq(); {
		resp, err := stream.Receive()
		must(t, err)
		seen = max(seen, resp.GetEvent().GetSeq())
	}
	abelRow := demoAgent(ctx, t, srv, "Abel Tuter")
	_, err = srv.Client(parley.Connect, servertest.AdminToken).Routing.UpdateAgent(ctx, &parleyv1.UpdateAgentRequest{
		AgentId: abelRow.GetId(), DisplayName: abelRow.GetDisplayName(), Capacity: abelRow.GetCapacity(),
		QueueIds: []string{demoQueue(ctx, t, srv, "Order Support")},
	})
	must(t, err)
	_, err = guest.Messaging.SetTyping(ctx, &parleyv1.SetTypingRequest{ConversationId: convID, Typing: true})
	must(t, err)
	for {
		resp, err := stream.Receive()
		if err != nil {
			wantReason(t, "stream end", err, connect.CodePermissionDenied, "CONVERSATION_ACCESS_DENIED")
			return
		}
		if resp.GetTyping() != nil || resp.GetEvent() != nil {
			t.Fatalf("an agent removed from the chat's queue was sent %v", resp)
		}
	}
}

// TestCustomerChatsAreBounded: a signed-in customer starting and closing
// chats in a loop is refused past the hourly limit, so one identity cannot
// store without bound.
func TestCustomerChatsAreBounded(t *testing.T) {
	srv := servertest.Start(t, servertest.WithFakeClock(hostileT0), servertest.WithoutWriteLimits())
	ctx := t.Context()
	customer := srv.Client(parley.Connect, srv.CustomerToken(t, "looper", "Lou", ""))
	cycle := func() error {
		started, err := customer.Session.StartCustomerChat(ctx, &parleyv1.StartCustomerChatRequest{RequestId: uuid.NewString(), IssueType: "order"})
		if err != nil {
			return err
		}
		_, err = customer.Session.CloseConversation(ctx, &parleyv1.CloseConversationRequest{ConversationId: started.GetConversation().GetId()})
		return err
	}
	for i := range session.MaxCustomerChatsPerHour {
		if err := cycle(); err != nil {
			t.Fatalf("chat %d: %v", i+1, err)
		}
	}
	wantReason(t, "one chat too many", cycle(), connect.CodeResourceExhausted, "CUSTOMER_CHAT_LIMIT")
	srv.Clock.Advance(time.Hour)
	customer = srv.Client(parley.Connect, srv.CustomerToken(t, "looper", "Lou", ""))
	if err := cycle(); err != nil {
		t.Fatalf("an hour later: %v", err)
	}
}

// TestHandoverOnAnotherReplicaEndsTheStream: an agent's stream on one
// replica ends once the chat they held is handed over on another, before
// it passes on any more of the chat's signals (no wake-up crosses between
// the two: the stream finds out at its next signal or heartbeat).
func TestHandoverOnAnotherReplicaEndsTheStream(t *testing.T) {
	a, b := twoReplicas(t)
	ctx := t.Context()
	started, err := a.Client(parley.Connect, "").Session.StartGuestChat(ctx, &parleyv1.StartGuestChatRequest{
		RequestId: uuid.NewString(), Name: "Ada", Email: "ada@example.com", IssueType: "billing", FirstMessage: "hello",
	})
	must(t, err)
	convID := started.GetConversation().GetId()
	guestA := a.Client(parley.Connect, started.GetGuestToken())
	guestB := b.Client(parley.Connect, started.GetGuestToken())
	bethA := a.Client(parley.Connect, servertest.BethToken)
	setPresence(ctx, t, bethA, parleyv1.Presence_PRESENCE_AVAILABLE)
	work := watchWork(ctx, t, bethA)
	must(t, a.App.Dispatch(ctx))
	_, err = bethA.Routing.AcceptOffer(ctx, &parleyv1.AcceptOfferRequest{OfferId: work.nextOffer(t).GetId()})
	must(t, err)
	conv, err := guestA.Session.GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: convID})
	must(t, err)
	stream, err := b.Client(parley.GRPC, servertest.BethToken).Messaging.Subscribe(ctx, &parleyv1.SubscribeRequest{ConversationId: convID})
	must(t, err)
	for seen := int64(0); seen < conv.GetConversation().GetLastSeq(); {
		resp, err := stream.Receive()
		must(t, err)
		seen = max(seen, resp.GetEvent().GetSeq())
	}
	product := demoQueue(ctx, t, a, "Product Support")
	_, err = bethA.Routing.TransferConversation(ctx, &parleyv1.TransferConversationRequest{
		ConversationId: convID, RequestId: uuid.NewString(), Target: &parleyv1.TransferConversationRequest_QueueId{QueueId: product},
	})
	must(t, err)
	_, err = guestB.Messaging.SetTyping(ctx, &parleyv1.SetTypingRequest{ConversationId: convID, Typing: true})
	must(t, err)
	for {
		resp, err := stream.Receive()
		if err != nil {
			wantReason(t, "stream end", err, connect.CodePermissionDenied, "NO_LONGER_HOLDING")
			return
		}
		if resp.GetTyping() != nil || resp.GetEvent().GetSeq() > conv.GetConversation().GetLastSeq() {
			t.Fatalf("a stream of a chat handed over on another replica was sent %v", resp)
		}
	}
}
