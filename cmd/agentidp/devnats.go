package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/agentidp/agentidp/libs/natsbus"
)

// natsCredentialsFile holds the user and password of the dev NATS listener,
// next to the data it protects (mode 0600).
const natsCredentialsFile = "nats-credentials.json"

// devNATSCredentials is the content of natsCredentialsFile.
type devNATSCredentials struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// devNATSOptions turns the --nats-listen and --nats-no-auth flags into the
// embedded server's options. Without --nats-listen the server opens no port
// and needs no credentials (only this process can reach it). With it, the
// listener is loopback unless a host is named, and it requires the user and
// password of DIR/nats-credentials.json (created on first use) unless
// --nats-no-auth is given, which is refused on a non-loopback address:
// whoever reaches an open NATS port reads every event and can purge a
// revocation from the KV mirror. It returns the credentials file's path
// ("" when there is none).
func devNATSOptions(dataDir, listen string, noAuth bool) (natsbus.EmbeddedOptions, string, error) {
	o := natsbus.EmbeddedOptions{StoreDir: filepath.Join(dataDir, "nats")}
	if listen == "" {
		if noAuth {
			return o, "", errors.New("--nats-no-auth needs --nats-listen")
		}
		return o, "", nil
	}
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		return o, "", fmt.Errorf("--nats-listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return o, "", fmt.Errorf("--nats-listen %q: port must be a number from 0 to 65535", listen)
	}
	if host == "" {
		host = "127.0.0.1" // loopback unless asked explicitly
	}
	if port == 0 {
		port = -1 // nats-server reads 0 as its default port 4222
	}
	if noAuth && !isLoopbackHost(host) {
		return o, "", fmt.Errorf("--nats-listen %s is not a loopback address: refusing to expose NATS there without authentication; drop --nats-no-auth (clients then use the user and password in %s) or listen on 127.0.0.1",
			listen, filepath.Join(dataDir, natsCredentialsFile))
	}
	o.Listen, o.Host, o.Port = true, host, port
	if port > 0 {
		// nats-server reports a busy port only in its log, after a long
		// wait; probe it first for a clear error, before anything is
		// written to the data directory.
		hostPort := net.JoinHostPort(host, strconv.Itoa(port))
		l, err := net.Listen("tcp", hostPort)
		if err != nil {
			return o, "", bindError("NATS", "--nats-listen", hostPort, err)
		}
		l.Close()
	}
	if noAuth {
		return o, "", nil
	}
	creds, path, err := loadOrCreateNATSCredentials(dataDir)
	if err != nil {
		return o, "", err
	}
	o.Username, o.Password = creds.User, creds.Password
	return o, path, nil
}

// isLoopbackHost reports whether host names only this machine: a loopback
// IP or "localhost". Any other name could resolve anywhere.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loadOrCreateNATSCredentials reads DIR/nats-credentials.json, creating it
// with a random password on first use. A file that exists but cannot be
// read is an error naming it, not a silent new password.
func loadOrCreateNATSCredentials(dataDir string) (devNATSCredentials, string, error) {
	path := filepath.Join(dataDir, natsCredentialsFile)
	var c devNATSCredentials
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &c); err != nil || c.User == "" || len(c.Password) < 32 {
			return c, path, fmt.Errorf("%s is unreadable (delete it to generate new NATS credentials)", path)
		}
		return c, path, nil
	case !errors.Is(err, fs.ErrNotExist):
		return c, path, fmt.Errorf("read %s: %w", path, err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return c, path, fmt.Errorf("data directory: %w", err)
	}
	c = devNATSCredentials{User: "agentidp-dev", Password: randomHex(32)}
	b, _ = json.MarshalIndent(c, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return c, path, fmt.Errorf("write %s: %w", path, err)
	}
	return c, path, nil
}
