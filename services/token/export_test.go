package token

import "time"

// SetKeyLoopForTest shortens the key-ring loop (restored at test end by
// the caller).
func SetKeyLoopForTest(advance, poll time.Duration) (restore func()) {
	a, p := keyAdvanceEvery, keyPollEvery
	keyAdvanceEvery, keyPollEvery = advance, poll
	return func() { keyAdvanceEvery, keyPollEvery = a, p }
}
