package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// portHolder names the process listening on addr's TCP port, best effort:
// on Linux it finds the listening socket's inode in /proc/net/tcp{,6} and
// the process holding that inode among /proc/*/fd. It returns "" when it
// cannot tell (another OS, no /proc, or nothing found).
func portHolder(addr string) string {
	_, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port <= 0 {
		return ""
	}
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		listeningInodes(table, port, inodes)
	}
	if len(inodes) == 0 {
		return ""
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		link, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		if !inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
			continue
		}
		pidDir := filepath.Dir(filepath.Dir(fd))
		pid := filepath.Base(pidDir)
		desc := "process " + pid
		if comm, err := os.ReadFile(filepath.Join(pidDir, "comm")); err == nil {
			desc += " (" + strings.TrimSpace(string(comm)) + ")"
		}
		return desc
	}
	// The socket exists but its process is not ours to see.
	return fmt.Sprintf("a process of another user (sudo ss -ltnp 'sport = :%d' names it)", port)
}

// listeningInodes adds the inodes of the sockets listening on port in a
// /proc/net/tcp-format table to inodes.
func listeningInodes(table string, port int, inodes map[string]bool) {
	f, err := os.Open(table)
	if err != nil {
		return
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" { // 0A: LISTEN
			continue
		}
		if strings.HasSuffix(fields[1], want) {
			inodes[fields[9]] = true
		}
	}
}
