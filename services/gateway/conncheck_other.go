//go:build !unix

package gateway

// alive cannot peek without blocking here; a connection the upstream closed
// while idle is found on use, and a replayable request is retried.
func (pc *upstreamConn) alive() bool { return true }
