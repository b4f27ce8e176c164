package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"

	"connectrpc.com/connect/v2"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Tracing traces every RPC with OpenTelemetry and exports the spans with
// OTLP over HTTP. It exists only when configured: without it parleyd
// starts no exporter, no goroutine and no interceptor.
type Tracing struct {
	provider    *sdktrace.TracerProvider
	interceptor connect.ServerInterceptor
}

// NewTracing starts a tracer provider that batches spans and sends them to
// endpoint, an OTLP/HTTP base URL such as http://collector:4318 (spans go
// to its /v1/traces, as with OTEL_EXPORTER_OTLP_ENDPOINT; an http URL is
// sent in cleartext). The exporter's other standard variables
// (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, _PROTOCOL
// http/protobuf or http/json) apply; the grpc protocol is refused. The
// service is named parleyd unless OTEL_SERVICE_NAME says otherwise. Call
// Shutdown to flush the spans on exit.
func NewTracing(ctx context.Context, endpoint string) (*Tracing, error) {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		if p := os.Getenv(name); p == "grpc" {
			return nil, fmt.Errorf("tracing: %s=grpc is not supported: parleyd exports OTLP over HTTP (http/protobuf or http/json)", name)
		}
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tracing: OTLP endpoint %q is not an http:// or https:// URL", endpoint)
	}
	u.Path = path.Join("/", u.Path, "v1/traces")
	exporter, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "parleyd")),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("tracing: resource: %w", err), exporter.Shutdown(ctx))
	}
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	interceptor, err := otelconnect.NewServerInterceptor(
		otelconnect.WithTracerProvider(provider),
		otelconnect.WithPropagator(propagation.TraceContext{}),
		otelconnect.WithoutMetrics(),
	)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("tracing: interceptor: %w", err), provider.Shutdown(ctx))
	}
	return &Tracing{provider: provider, interceptor: interceptor}, nil
}

// Interceptor opens a span for every RPC, named after its procedure
// (parley.v1.SessionService/StartGuestChat) with its Connect code. A
// caller's traceparent header is linked to the span, not its parent:
// callers are not trusted.
func (t *Tracing) Interceptor() connect.ServerInterceptor {
	return t.interceptor
}

// Shutdown sends the spans not yet sent and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shut down: %w", err)
	}
	return nil
}
