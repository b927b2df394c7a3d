package counting

import (
	"encoding/json"
	"time"

	"github.com/agentidp/agentidp/libs/events"
)

// didData is the part of the did service's did.created payload the read
// model needs (the type lives in the did service, not in libs/events).
type didData struct {
	AgentID string `json:"agentId"`
	DID     string `json:"did"`
}

// eventOf maps an envelope (with its effective time at) to the Event the
// store applies, including its read-model change. A payload that does not
// decode only loses the read-model change: the event is still counted and
// audited.
func eventOf(e events.Envelope, at time.Time) Event {
	ev := Event{
		ID: e.ID, OrgID: e.OrgID, Date: at.Format(DateLayout), Hour: at.Hour(), Time: at,
		Metric: string(e.Type), Subject: e.Subject, Source: e.Source, Data: []byte(e.Data),
	}
	switch e.Type {
	case events.AgentCreated, events.AgentUpdated, events.AgentSuspended, events.AgentReactivated, events.AgentDecommissioned:
		var d events.AgentData
		if json.Unmarshal(e.Data, &d) == nil {
			id := d.AgentID
			if id == "" {
				id = e.Subject
			}
			if id != "" {
				ev.Agent = &AgentUpdate{AgentID: id, Email: d.Email, AgentType: d.AgentType, Status: d.Status,
					Scopes: d.Scopes, Created: e.Type == events.AgentCreated, At: at}
			}
		}
	case events.DIDCreated:
		var d didData
		if json.Unmarshal(e.Data, &d) == nil {
			id := d.AgentID
			if id == "" {
				id = e.Subject
			}
			if id != "" && d.DID != "" {
				ev.DID = &DIDUpdate{AgentID: id, DID: d.DID, At: at}
			}
		}
	case events.CredentialGenerated, events.CredentialRotated, events.CredentialRevoked:
		var d events.CredentialData
		if json.Unmarshal(e.Data, &d) == nil && d.CredentialID != "" {
			agent := d.AgentID
			if agent == "" {
				agent = e.Subject
			}
			status := d.Status
			if status == "" && e.Type == events.CredentialRevoked {
				status = "revoked"
			}
			ev.Credential = &CredentialUpdate{CredentialID: d.CredentialID, AgentID: agent, Status: status,
				ExpiresAt: d.ExpiresAt, Issued: e.Type != events.CredentialRevoked, At: at}
		}
	}
	return ev
}
