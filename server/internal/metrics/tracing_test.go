package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/app"
	"github.com/parleyhq/parley/server/internal/metrics"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// otlpReceiver is an OTLP/HTTP trace receiver: it keeps the spans POSTed
// to /v1/traces, by name, with their service and status code attribute.
type otlpReceiver struct {
	mu    sync.Mutex
	spans map[string]receivedSpan
}

type receivedSpan struct {
	service, code string
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.NotFound(w, req)
		return
	}
	body, err := io.ReadAll(req.Body)
	var export coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &export)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range export.GetResourceSpans() {
		var span receivedSpan
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				span.service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				span.code = ""
				for _, kv := range s.GetAttributes() {
					if kv.GetKey() == "rpc.response.status_code" {
						span.code = kv.GetValue().GetStringValue()
					}
				}
				r.spans[s.GetName()] = span
			}
		}
	}
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{}) // an empty message marshals
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// TestTracingExportsSpans makes RPCs on a server with tracing on and
// checks that their spans reach an OTLP/HTTP receiver.
func TestTracingExportsSpans(t *testing.T) {
	for _, name := range []string{"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"} {
		t.Setenv(name, "") // empty is unset for the SDK
	}
	receiver := &otlpReceiver{spans: map[string]receivedSpan{}}
	collector := httptest.NewServer(receiver)
	defer collector.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tracing, err := metrics.NewTracing(ctx, collector.URL)
	if err != nil {
		t.Fatal(err)
	}
	s := servertest.Start(t, servertest.WithAppOptions(app.Options{Tracing: tracing}))
	anon := s.Client(parley.Connect, "")
	if _, err := anon.Session.GetPreChatForm(ctx, &parleyv1.GetPreChatFormRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Routing.ListQueues(ctx, &parleyv1.ListQueuesRequest{}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("ListQueues without a token: %v, want Unauthenticated", err)
	}
	if err := tracing.Shutdown(ctx); err != nil { // sends what is batched
		t.Fatal(err)
	}

	receiver.mu.Lock()
	defer receiver.mu.Unlock()
	for name, want := range map[string]receivedSpan{
		"parley.v1.SessionService/GetPreChatForm": {service: "parleyd", code: "OK"},
		"parley.v1.RoutingService/ListQueues":     {service: "parleyd", code: "UNAUTHENTICATED"},
	} {
		if got, ok := receiver.spans[name]; !ok || got != want {
			t.Errorf("span %s: %+v (received: %v), want %+v", name, got, ok, want)
		}
	}
}

// TestTracingRefusesWhatItCannotExport checks the configurations that
// NewTracing refuses rather than drop spans.
func TestTracingRefusesWhatItCannotExport(t *testing.T) {
	ctx := context.Background()
	for _, endpoint := range []string{"localhost:4318", "collector:4318", "ftp://collector", ""} {
		if tr, err := metrics.NewTracing(ctx, endpoint); err == nil {
			tr.Shutdown(ctx)
			t.Errorf("endpoint %q accepted", endpoint)
		}
	}
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	if tr, err := metrics.NewTracing(ctx, "http://localhost:4317"); err == nil {
		tr.Shutdown(ctx)
		t.Error("OTEL_EXPORTER_OTLP_PROTOCOL=grpc accepted")
	}
}
