package main

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// devListeners are every TCP listener `agentidp dev` serves on.
type devListeners struct {
	gateway, internal net.Listener
	backends          map[string]net.Listener // by service name, random loopback ports
}

// close closes every listener; after Serve has closed some, the errors
// of closing them again mean nothing.
func (l *devListeners) close() {
	for _, x := range l.backends {
		x.Close()
	}
	if l.gateway != nil {
		l.gateway.Close()
	}
	if l.internal != nil {
		l.internal.Close()
	}
}

// bindDevListeners binds the gateway's public and internal addresses and a
// loopback port per backend service, closing what it opened on failure.
func bindDevListeners(addr, internalAddr string) (*devListeners, error) {
	l := &devListeners{backends: map[string]net.Listener{}}
	var err error
	if l.gateway, err = net.Listen("tcp", addr); err != nil {
		return nil, bindError("gateway", "--addr", addr, err)
	}
	if l.internal, err = net.Listen("tcp", internalAddr); err != nil {
		l.close()
		return nil, bindError("gateway health and metrics", "--internal-addr", internalAddr, err)
	}
	for _, name := range backendServices {
		x, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			l.close()
			return nil, fmt.Errorf("%s listen on a loopback port: %w", name, err)
		}
		l.backends[name] = x
	}
	return l, nil
}

// bindError explains a failed bind: for a busy port, which process holds
// it (when this system lets us see) and how to choose another address.
func bindError(what, flagName, addr string, err error) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s listen %s: %w", what, addr, err)
	}
	msg := fmt.Sprintf("%s listen %s: the address is already in use", what, addr)
	if holder := portHolder(addr); holder != "" {
		msg += " by " + holder
	}
	msg += fmt.Sprintf("; stop it or choose another address with %s HOST:PORT", flagName)
	if hint, ok := makeVariable[flagName]; ok {
		msg += fmt.Sprintf(" (make run %s=HOST:PORT)", hint)
	}
	return errors.New(msg)
}

// makeVariable names the `make run` variable setting each flag.
var makeVariable = map[string]string{"--addr": "ADDR", "--internal-addr": "INTERNAL_ADDR", "--nats-listen": "NATS_LISTEN"}
