// Package secrets is the secrets port of AgentIdP: services keep token
// signing keys, DID private keys and webhook signing secrets behind the Store
// interface instead of in their own tables or environment.
//
// # Backends
//
// Vault (NewVault) is used in production, whenever VAULT_ADDR is set. It
// talks to HashiCorp Vault's KV version 2 secrets engine through
// github.com/hashicorp/vault/api: a secret at path P lives at
// <mount>/data/<prefix>/P (versions, soft deletes) with its metadata at
// <mount>/metadata/<prefix>/P (List, Delete). Vault keeps the audit trail,
// access policy and unsealing ceremony; note that KV v2 keeps only the last
// max_versions versions (10 unless the mount says otherwise), so GetVersion of
// an older version reports ErrNotFound there.
//
// Local (NewLocal) is used everywhere else (the all-in-one `agentidp dev`,
// tests, small installs): versions are rows of the service's own database
// table secret_versions, each value sealed with AES-256-GCM under a 32-byte
// key-encryption key (KEK) with a fresh random nonce, and the path and version
// bound in as associated data so that a sealed value copied to another row
// does not open. Local keeps every version until Delete.
//
// Both satisfy the same contract, checked by one conformance suite
// (secretstest.Run); vaulttest is the in-process stand-in for Vault the suite
// runs against.
//
// # Configuration
//
// FromEnv picks the backend from these variables (read through libs/config):
//
//	VAULT_ADDR         Vault address, e.g. https://vault:8200. Set = use Vault; unset = Local.
//	VAULT_TOKEN        static token (takes precedence over AppRole)
//	VAULT_ROLE_ID      AppRole role_id   } used when VAULT_TOKEN is empty: login at
//	VAULT_SECRET_ID    AppRole secret_id } auth/approle/login, re-login before expiry and on 403
//	VAULT_MOUNT        KV v2 mount, default "secret"
//	VAULT_PATH_PREFIX  prefix under the mount, default "agentidp"
//	VAULT_TIMEOUT      per-request timeout, default 10s
//
// The Vault client also honours its own standard TLS variables (VAULT_CACERT,
// VAULT_CLIENT_CERT, VAULT_CLIENT_KEY, VAULT_TLS_SERVER_NAME, VAULT_NAMESPACE)
// from the process environment. For Local the service supplies the KEK (its
// own required key variable) and its database.
//
// # Paths and errors
//
// Paths are slash-separated, non-empty segments of [A-Za-z0-9._-], without
// "..", at most 512 characters (ValidatePath); anything else is
// ErrInvalidPath before any I/O. Errors wrap ErrNotFound, ErrUnavailable,
// ErrInvalidPath or ErrPermissionDenied where they apply and never contain a
// secret's values or a credential (token, secret_id, KEK).
package secrets
