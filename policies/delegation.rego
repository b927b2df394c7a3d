# Delegation policy of the AgentIdP token service: decides every RFC 8693
# token exchange (an agent acting for another agent).
#
# Input: {
#   subject:  {sub, organization_id, scopes[], chain_ids[]}  the token exchanged
#   actor:    {sub, organization_id}                         the agent that will act
#   chain:    [agent ids, outermost delegator first, the actor last]
#   scopes:   the subject token's scopes
#   requested_scopes: the scopes asked for (already defaulted)
#   audience: the requested audience
#   depth:    the new token's delegation depth (1 = first hop)
#   max_depth
# }
#
# Output: decision := {"allow": bool, "reason": string}. The service has
# already verified both tokens and narrowed scope, audience and lifetime;
# the policy is the place for organisation-wide rules on top (it denies
# anything it does not positively allow).
package agentidp.delegation

default decision := {"allow": false, "reason": "delegation not allowed"}

decision := {"allow": true, "reason": "allowed"} if {
	count(deny) == 0
}

decision := {"allow": false, "reason": concat("; ", sort(deny))} if {
	count(deny) > 0
}

deny contains "subject and actor are in different organizations" if {
	input.subject.organization_id != input.actor.organization_id
}

deny contains "no organization" if {
	input.subject.organization_id == ""
}

deny contains sprintf("delegation depth %d exceeds the maximum of %d", [input.depth, input.max_depth]) if {
	input.depth > input.max_depth
}

deny contains "an agent cannot delegate to itself" if {
	input.actor.sub == input.subject.sub
}

# An agent already in the chain would get back authority it delegated away
# (a cycle A -> B -> A).
deny contains "the actor is already in the delegation chain" if {
	some i
	i < count(input.chain) - 1
	input.chain[i] == input.actor.sub
}

deny contains sprintf("scope %s is not held by the subject token", [s]) if {
	some s in input.requested_scopes
	not s in input.scopes
}

deny contains "no scope requested" if {
	count(input.requested_scopes) == 0
}

# admin:orgs is the only cross-organisation scope; it is never delegated.
deny contains "admin:orgs cannot be delegated" if {
	"admin:orgs" in input.requested_scopes
}
