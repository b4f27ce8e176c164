package app_test

import (
	"context"
	"testing"

	"connectrpc.com/connect/v2"

	"github.com/parleyhq/parley/clients/go/parley"
	parleyv1 "github.com/parleyhq/parley/gen/parley/v1"
	"github.com/parleyhq/parley/server/internal/auth"
	"github.com/parleyhq/parley/server/internal/servertest"
)

// TestEveryProcedureHasAPolicy fails when an RPC is added without saying
// who may call it, or a policy outlives its RPC.
func TestEveryProcedureHasAPolicy(t *testing.T) {
	srv := servertest.Start(t)
	served := map[string]bool{}
	for spec := range srv.App.Server.Specs() {
		served[spec.Procedure] = true
		if _, ok := auth.Policies[spec.Procedure]; !ok {
			t.Errorf("%s has no entry in auth.Policies", spec.Procedure)
		}
	}
	for procedure := range auth.Policies {
		if !served[procedure] {
			t.Errorf("auth.Policies names %s, which is not served", procedure)
		}
	}
}

func TestCredentialsAreChecked(t *testing.T) {
	srv := servertest.Start(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		token string
		call  func(*parley.Client) error
		code  connect.Code
	}{
		{"admin RPC without a token", "", func(c *parley.Client) error {
			_, err := c.Routing.ListAgents(ctx, &parleyv1.ListAgentsRequest{})
			return err
		}, connect.CodeUnauthenticated},
		{"unknown token", "ps_not_a_real_token", func(c *parley.Client) error {
			_, err := c.Routing.ListAgents(ctx, &parleyv1.ListAgentsRequest{})
			return err
		}, connect.CodeUnauthenticated},
		{"agent calls an admin RPC", servertest.BethToken, func(c *parley.Client) error {
			_, err := c.Routing.CreateQueue(ctx, &parleyv1.CreateQueueRequest{DisplayName: "Sneaky"})
			return err
		}, connect.CodePermissionDenied},
		{"admin calls an agent RPC", servertest.AdminToken, func(c *parley.Client) error {
			_, err := c.Routing.SetPresence(ctx, &parleyv1.SetPresenceRequest{Presence: parleyv1.Presence_PRESENCE_AVAILABLE})
			return err
		}, connect.CodePermissionDenied},
		{"a bad token on a public RPC", "ps_not_a_real_token", func(c *parley.Client) error {
			_, err := c.Session.GetPreChatForm(ctx, &parleyv1.GetPreChatFormRequest{})
			return err
		}, connect.CodeUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(srv.Client(parley.Connect, tt.token)); connect.CodeOf(err) != tt.code {
				t.Fatalf("got %v, want %v", err, tt.code)
			}
		})
	}
	if n, err := srv.DB.Queue.Query().Count(ctx); err != nil || n != 3 {
		t.Fatalf("%d queues after a refused CreateQueue (%v)", n, err)
	}
}
