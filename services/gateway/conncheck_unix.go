//go:build unix

package gateway

import (
	"errors"
	"syscall"
)

// alive reports whether the idle connection can carry another request: a
// non-blocking peek that finds nothing to read. End of stream means the
// upstream closed it while idle; unexpected bytes mean it is out of sync.
func (pc *upstreamConn) alive() bool {
	sc, ok := pc.c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && alive
}
