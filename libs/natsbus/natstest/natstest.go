// Package natstest starts a real NATS server with JetStream inside a test.
package natstest

import (
	"context"
	"testing"

	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an embedded NATS server for one test.
type Server struct {
	*natsbus.Embedded
}

// Start runs an embedded NATS server (TCP on a random loopback port, so
// separate-process wiring can reach it too) with storage in t.TempDir(), and
// creates the event streams. It is shut down when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{StoreDir: t.TempDir(), Listen: true, Port: -1})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(e.Shutdown)
	s := &Server{e}
	_, js := s.Connect(t)
	if err := natsbus.EnsureStreams(context.Background(), js, natsbus.StreamOptions{}); err != nil {
		t.Fatalf("ensure streams: %v", err)
	}
	return s
}

// Connect opens a client connection closed at the end of the test.
func (s *Server) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatalf("connect nats: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}
