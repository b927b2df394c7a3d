package natsbus

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedOptions configure an in-process NATS server.
type EmbeddedOptions struct {
	StoreDir string // JetStream storage; a data directory survives restarts
	Listen   bool   // open a TCP port (Host:Port); otherwise in-process only
	Host     string
	Port     int // -1 for a random port
	// Username and Password, when set, are required of every client, the
	// in-process ones included (Connect presents them): a listening port
	// then gives nothing to whoever merely reaches it.
	Username, Password string
}

// StartEmbedded starts a NATS server with JetStream inside this process. By
// default it opens no port, so it never collides with a NATS server already
// running on the machine; connect with Embedded.Connect.
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	opts := &server.Options{
		ServerName: "agentidp-embedded",
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		DontListen: !o.Listen,
		Host:       o.Host,
		Port:       o.Port,
		Username:   o.Username,
		Password:   o.Password,
	}
	if o.Listen && opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 10s")
	}
	return &Embedded{Server: ns, user: o.Username, password: o.Password}, nil
}

// Embedded is a running in-process NATS server.
type Embedded struct {
	Server         *server.Server
	user, password string
}

// Connect returns an in-process client connection, authenticated with the
// server's user and password when it has them.
func (e *Embedded) Connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.InProcessServer(e.Server), nats.MaxReconnects(-1)}
	if e.user != "" {
		opts = append(opts, nats.UserInfo(e.user, e.password))
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded nats: %w", err)
	}
	return nc, nil
}

// URL is the client URL when the server listens on TCP ("" otherwise).
func (e *Embedded) URL() string {
	if e.Server.Addr() == nil {
		return ""
	}
	return e.Server.ClientURL()
}

// Shutdown stops the server and waits for it.
func (e *Embedded) Shutdown() {
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
}
