package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/hawser-rpc/hawser"
	"github.com/hawser-rpc/hawser/auth"
	"github.com/hawser-rpc/hawser/server"
)

// Shape is an interface field: only registered types decode into it.
type Shape interface{ Area() float64 }

type Circle struct{ R float64 }

func (c *Circle) Area() float64 { return 3 * c.R * c.R }

type Drawing struct {
	Name  string
	Shape Shape
}

const (
	circleTag = 0x7a0001
	squareTag = 0x7a0002 // registered nowhere: what a hostile or newer peer might send
)

func init() { hawser.RegisterType[Circle](circleTag) }

var draw = hawser.NewMethod[Drawing, float64]("shapes.Draw")

// TestUnregisteredTypeRefusedOverTheWire: a request whose interface field
// holds a type not registered for it fails to decode on the server with
// the allowlist error, re-created on the client; the handler never runs
// and the connection keeps serving. A registered type goes through.
func TestUnregisteredTypeRefusedOverTheWire(t *testing.T) {
	var ran atomic.Int64
	svc := service(t, auth.LoginLimit{}, auth.UserConfig{Username: "alice", Password: "pw", Permissions: []string{"ALL"}})
	n := startNodeWith(t, svc, func(srv *server.Server) {
		must(t, server.Handle(srv, draw, func(_ context.Context, d Drawing) (float64, error) {
			ran.Add(1)
			return d.Shape.Area(), nil
		}))
	})
	c := n.dial(t, "alice", "pw")
	ctx := context.Background()

	area, err := draw.Call(ctx, c, Drawing{Name: "ok", Shape: &Circle{R: 2}})
	if err != nil || area != 12 {
		t.Fatalf("a registered shape: %v, %v", area, err)
	}
	hostile, err := cbor.Marshal(map[string]any{"Name": "bad", "Shape": cbor.Tag{Number: squareTag, Content: map[string]float64{"S": 2}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Call(ctx, draw.ID(), hostile)
	if !errors.Is(err, hawser.ErrTypeNotAllowed) {
		t.Fatalf("an unregistered shape: %v, want ErrTypeNotAllowed", err)
	}
	if ran.Load() != 1 {
		t.Fatalf("the handler ran %d times, want 1 (the refused request must not reach it)", ran.Load())
	}
	if _, err := draw.Call(ctx, c, Drawing{Shape: &Circle{R: 1}}); err != nil {
		t.Fatalf("the connection after the refusal: %v", err)
	}
}
