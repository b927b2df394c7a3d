module github.com/agentidp/agentidp/e2e

go 1.26.0

require (
	github.com/agentidp/agentidp/libs/events v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/natsbus v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/testkit v0.0.0-00010101000000-000000000000
	github.com/google/uuid v1.6.0
	github.com/jackc/pgx/v5 v5.12.0
	github.com/nats-io/nats.go v1.55.0
	github.com/redis/go-redis/v9 v9.23.0
)

require (
	github.com/antithesishq/antithesis-sdk-go v0.8.0-default-no-op // indirect
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/minio/highwayhash v1.0.4 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/nats-io/jwt/v2 v2.8.2 // indirect
	github.com/nats-io/nats-server/v2 v2.15.2 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	golang.org/x/time v0.16.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace (
	github.com/agentidp/agentidp/libs/events => ../libs/events
	github.com/agentidp/agentidp/libs/natsbus => ../libs/natsbus
	github.com/agentidp/agentidp/libs/testkit => ../libs/testkit
)

replace (
	github.com/agentidp/agentidp/libs/authn => ../libs/authn
	github.com/agentidp/agentidp/libs/cache => ../libs/cache
	github.com/agentidp/agentidp/libs/config => ../libs/config
	github.com/agentidp/agentidp/libs/httpx => ../libs/httpx
	github.com/agentidp/agentidp/libs/jose => ../libs/jose
	github.com/agentidp/agentidp/libs/revocation => ../libs/revocation
	github.com/agentidp/agentidp/libs/safehttp => ../libs/safehttp
	github.com/agentidp/agentidp/libs/secrets => ../libs/secrets
	github.com/agentidp/agentidp/libs/sqlstore => ../libs/sqlstore
	github.com/agentidp/agentidp/libs/svcrun => ../libs/svcrun
	github.com/agentidp/agentidp/policies => ../policies
	github.com/agentidp/agentidp/services/analytics => ../services/analytics
	github.com/agentidp/agentidp/services/billing => ../services/billing
	github.com/agentidp/agentidp/services/did => ../services/did
	github.com/agentidp/agentidp/services/federation => ../services/federation
	github.com/agentidp/agentidp/services/gateway => ../services/gateway
	github.com/agentidp/agentidp/services/tier => ../services/tier
	github.com/agentidp/agentidp/services/token => ../services/token
	github.com/agentidp/agentidp/services/webhook => ../services/webhook
)
