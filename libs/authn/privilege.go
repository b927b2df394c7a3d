package authn

// ScopeAdminOrgs is the platform operator's scope: its holder manages every
// agent of every organisation (docs/security.md, "Privilege model").
const ScopeAdminOrgs = "admin:orgs"

// MayManage is the core of the privilege rule, shared by every service that
// lets one agent act on another (token: credentials, keys, scopes, status,
// decommissioning; did: DID key rotation), so that there is one definition:
// the caller may manage a target only when every scope the target is
// allowed is one the caller's token carries, so no operation can hand the
// caller (or anyone) more than it was given. A caller whose token carries
// ScopeAdminOrgs manages everyone; since nobody else holds that scope,
// nobody else manages an agent that holds it.
//
// targetScopes must be the target's allowed scopes as the service knows
// them; a service that does not know them must not call MayManage with an
// empty list (which every caller covers) but refuse instead.
func MayManage(caller Identity, targetScopes []string) bool {
	if caller.HasScope(ScopeAdminOrgs) {
		return true
	}
	for _, sc := range targetScopes {
		if !caller.HasScope(sc) {
			return false
		}
	}
	return true
}
