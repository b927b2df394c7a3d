module github.com/agentidp/agentidp/libs/cache

go 1.26.0

require (
	github.com/agentidp/agentidp/libs/testkit v0.0.0
	github.com/prometheus/client_golang v1.25.0
	github.com/redis/go-redis/v9 v9.23.0
	github.com/sony/gobreaker/v2 v2.4.0
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/pgx/v5 v5.12.0 // indirect
	github.com/kylelemons/godebug v1.1.0 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace (
	github.com/agentidp/agentidp/libs/authn => ../authn
	github.com/agentidp/agentidp/libs/config => ../config
	github.com/agentidp/agentidp/libs/events => ../events
	github.com/agentidp/agentidp/libs/httpx => ../httpx
	github.com/agentidp/agentidp/libs/jose => ../jose
	github.com/agentidp/agentidp/libs/natsbus => ../natsbus
	github.com/agentidp/agentidp/libs/revocation => ../revocation
	github.com/agentidp/agentidp/libs/safehttp => ../safehttp
	github.com/agentidp/agentidp/libs/secrets => ../secrets
	github.com/agentidp/agentidp/libs/sqlstore => ../sqlstore
	github.com/agentidp/agentidp/libs/svcrun => ../svcrun
	github.com/agentidp/agentidp/libs/testkit => ../testkit
	github.com/agentidp/agentidp/policies => ../../policies
	github.com/agentidp/agentidp/services/analytics => ../../services/analytics
	github.com/agentidp/agentidp/services/billing => ../../services/billing
	github.com/agentidp/agentidp/services/did => ../../services/did
	github.com/agentidp/agentidp/services/federation => ../../services/federation
	github.com/agentidp/agentidp/services/gateway => ../../services/gateway
	github.com/agentidp/agentidp/services/tier => ../../services/tier
	github.com/agentidp/agentidp/services/token => ../../services/token
	github.com/agentidp/agentidp/services/webhook => ../../services/webhook
)
