module github.com/agentidp/agentidp/libs/svcrun

go 1.26

require (
	github.com/agentidp/agentidp/libs/authn v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/cache v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/config v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/events v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/httpx v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/natsbus v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/sqlstore v0.0.0-00010101000000-000000000000
)

replace (
	github.com/agentidp/agentidp/libs/authn => ../authn
	github.com/agentidp/agentidp/libs/cache => ../cache
	github.com/agentidp/agentidp/libs/config => ../config
	github.com/agentidp/agentidp/libs/events => ../events
	github.com/agentidp/agentidp/libs/httpx => ../httpx
	github.com/agentidp/agentidp/libs/natsbus => ../natsbus
	github.com/agentidp/agentidp/libs/sqlstore => ../sqlstore
)
