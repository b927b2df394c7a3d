module github.com/agentidp/agentidp/cmd/agentidp

go 1.26

require (
	github.com/agentidp/agentidp/services/webhook v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/services/federation v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/services/did v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/authn v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/cache v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/config v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/events v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/httpx v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/jose v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/natsbus v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/sqlstore v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/svcrun v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/policies v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/services/analytics v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/services/gateway v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/services/tier v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/services/token v0.0.0-00010101000000-000000000000
)

replace (
	github.com/agentidp/agentidp/libs/secrets => ../../libs/secrets
	github.com/agentidp/agentidp/libs/safehttp => ../../libs/safehttp
	github.com/agentidp/agentidp/services/webhook => ../../services/webhook
	github.com/agentidp/agentidp/services/federation => ../../services/federation
	github.com/agentidp/agentidp/services/did => ../../services/did
	github.com/agentidp/agentidp/libs/authn => ../../libs/authn
	github.com/agentidp/agentidp/libs/cache => ../../libs/cache
	github.com/agentidp/agentidp/libs/config => ../../libs/config
	github.com/agentidp/agentidp/libs/events => ../../libs/events
	github.com/agentidp/agentidp/libs/httpx => ../../libs/httpx
	github.com/agentidp/agentidp/libs/jose => ../../libs/jose
	github.com/agentidp/agentidp/libs/natsbus => ../../libs/natsbus
	github.com/agentidp/agentidp/libs/sqlstore => ../../libs/sqlstore
	github.com/agentidp/agentidp/libs/svcrun => ../../libs/svcrun
	github.com/agentidp/agentidp/libs/testkit => ../../libs/testkit
	github.com/agentidp/agentidp/policies => ../../policies
	github.com/agentidp/agentidp/services/analytics => ../../services/analytics
	github.com/agentidp/agentidp/services/gateway => ../../services/gateway
	github.com/agentidp/agentidp/services/tier => ../../services/tier
	github.com/agentidp/agentidp/services/token => ../../services/token
)
