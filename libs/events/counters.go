package events

import "time"

// The usage counters in the shared cache (Redis), written by the services
// that count and read by tier and billing. Their keys are a contract
// between services, so they are spelled here once.

// DayStamp formats the UTC day of t as YYYYMMDD, the day part of the daily
// counter keys.
func DayStamp(t time.Time) string { return t.UTC().Format("20060102") }

// AgentsCounterKey is the organisation's count of registered agents
// (set by the token service).
func AgentsCounterKey(orgID string) string { return "usage:agents:" + orgID }

// CallsCounterKey is the organisation's API calls on the day dayStamp
// (DayStamp), counted by the gateway.
func CallsCounterKey(orgID, dayStamp string) string { return "usage:calls:" + orgID + ":" + dayStamp }

// TokensCounterKey is the organisation's tokens issued on the day dayStamp
// (DayStamp), counted by the token service.
func TokensCounterKey(orgID, dayStamp string) string {
	return "usage:tokens:" + orgID + ":" + dayStamp
}
