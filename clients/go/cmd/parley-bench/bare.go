package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/gen/parley/v1/parleyv1connect"
)

// bareListening starts the line on which serve-bare tells its address.
const bareListening = "parley-bench bare server listening on "

// bareBuffer is how many events a bare subscriber may be behind before it
// is dropped (its stream ends with ResourceExhausted and it loses what it
// missed, since nothing is kept to replay).
const bareBuffer = 4096

// serveBare is the serve-bare subcommand: a bare connect-go server of the
// same shape as parleyd's delivery path, served like parleyd (connect.Server
// mounted with a read limit and a compression threshold, on an h2c
// http.Server), until SIGTERM or Ctrl-C.
func serveBare(args []string) error {
	fs := flag.NewFlagSet("parley-bench serve-bare", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	server := connect.NewServer()
	parleyv1connect.RegisterMessagingServiceHandler(server, newBareMessaging())
	mux := http.NewServeMux()
	connecthttp.Mount(mux, server, connecthttp.WithReadMaxBytes(1<<20), connecthttp.WithCompressMinBytes(1024))
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	fmt.Fprintf(os.Stderr, "%shttp://%s\n", bareListening, lis.Addr())
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// bareMessaging implements SendMessage and Subscribe of the generated
// MessagingService handler with an in-memory fan-out per conversation:
// no authentication, validation or storage, and no log to replay. Every
// other procedure is unimplemented.
type bareMessaging struct {
	parleyv1connect.UnimplementedMessagingServiceHandler

	mu    sync.Mutex
	convs map[string]*bareConversation
}

// bareConversation is one conversation's seq and live subscribers.
type bareConversation struct {
	mu   sync.Mutex
	seq  int64
	subs map[*bareSubscriber]struct{}
}

// bareSubscriber is one Subscribe stream's queue of events to send.
type bareSubscriber struct {
	events  chan *parleyv1.Event
	dropped chan struct{} // closed when the subscriber fell bareBuffer behind
}

func newBareMessaging() *bareMessaging {
	return &bareMessaging{convs: map[string]*bareConversation{}}
}

// conversation returns the conversation id, made on first use.
func (b *bareMessaging) conversation(id string) *bareConversation {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.convs[id]
	if c == nil {
		c = &bareConversation{subs: map[*bareSubscriber]struct{}{}}
		b.convs[id] = c
	}
	return c
}

// SendMessage gives the message the conversation's next seq and hands it to
// every subscriber of the conversation, in seq order.
func (b *bareMessaging) SendMessage(_ context.Context, req *parleyv1.SendMessageRequest) (*parleyv1.SendMessageResponse, error) {
	if req.GetConversationId() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, "conversation_id is required")
	}
	c := b.conversation(req.GetConversationId())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	ev := &parleyv1.Event{
		ConversationId: req.GetConversationId(),
		Seq:            c.seq,
		CreateTime:     timestamppb.Now(),
		Sender:         &parleyv1.Participant{Role: parleyv1.ParticipantRole_PARTICIPANT_ROLE_GUEST, DisplayName: "bench"},
		Kind:           &parleyv1.Event_MessagePosted{MessagePosted: &parleyv1.MessagePosted{Text: req.GetText()}},
	}
	for sub := range c.subs {
		select {
		case sub.events <- ev:
		default:
			delete(c.subs, sub)
			close(sub.dropped)
		}
	}
	return &parleyv1.SendMessageResponse{Event: ev}, nil
}

// Subscribe follows the conversation live from now on (after_seq is
// ignored: nothing is kept). A heartbeat right after the subscriber is
// registered tells the client that the stream follows the conversation.
func (b *bareMessaging) Subscribe(ctx context.Context, req *parleyv1.SubscribeRequest, stream parleyv1connect.MessagingServiceSubscribeServerStream) error {
	c := b.conversation(req.GetConversationId())
	sub := &bareSubscriber{events: make(chan *parleyv1.Event, bareBuffer), dropped: make(chan struct{})}
	c.mu.Lock()
	c.subs[sub] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.subs, sub)
		c.mu.Unlock()
	}()
	beat := &parleyv1.Heartbeat{SendTime: timestamppb.Now()}
	if err := stream.Send(&parleyv1.SubscribeResponse{Item: &parleyv1.SubscribeResponse_Heartbeat{Heartbeat: beat}}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sub.dropped:
			return connect.NewError(connect.CodeResourceExhausted, fmt.Sprintf("subscriber fell %d events behind and was dropped", bareBuffer))
		case ev := <-sub.events:
			if err := stream.Send(&parleyv1.SubscribeResponse{Item: &parleyv1.SubscribeResponse_Event{Event: ev}}); err != nil {
				return err
			}
		}
	}
}
