package natsbus

import (
	"context"
	"errors"
)

// errRetrying marks a consumer that keeps retrying a batch.
var errRetrying = errors.New("retrying: a dependency is away")

// StateDetail adapts a consumer's State to a /health/detailed entry
// (httpx.Detail's shape, without this package importing httpx): the state
// as the value, and an error while the consumer is retrying, so the report
// says "degraded" — the service still serves, the consumer waits.
func StateDetail(state func() ConsumerState) func(context.Context) (any, error) {
	return func(context.Context) (any, error) {
		st := state()
		if st.Retrying {
			return st, errRetrying
		}
		return st, nil
	}
}
