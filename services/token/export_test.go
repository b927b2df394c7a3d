package token

import "time"

// SetKeyLoopForTest shortens the key-ring loop (restored at test end by
// the caller).
func SetKeyLoopForTest(advance, poll time.Duration) (restore func()) {
	a, p := keyAdvanceEvery, keyPollEvery
	keyAdvanceEvery, keyPollEvery = advance, poll
	return func() { keyAdvanceEvery, keyPollEvery = a, p }
}

// SetClockForTest replaces the domain's clock.
func (s *Service) SetClockForTest(now func() time.Time) { s.svc.SetClock(now) }

// AuthBlockedForTest is how long this replica refuses the client id or
// address after failed authentications.
func (s *Service) AuthBlockedForTest(clientID, addr string) time.Duration {
	return s.svc.AuthBlockedFor(clientID, addr)
}
