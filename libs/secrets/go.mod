module github.com/agentidp/agentidp/libs/secrets

go 1.26.0

require (
	github.com/agentidp/agentidp/libs/config v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/sqlstore v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/testkit v0.0.0
	github.com/hashicorp/vault/api v1.23.0
)

require (
	github.com/agentidp/agentidp/libs/events v0.0.0-00010101000000-000000000000 // indirect
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cenkalti/backoff/v4 v4.3.0 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/dustin/go-humanize v1.1.0 // indirect
	github.com/go-jose/go-jose/v4 v4.1.1 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/hashicorp/errwrap v1.1.0 // indirect
	github.com/hashicorp/go-cleanhttp v0.5.2 // indirect
	github.com/hashicorp/go-multierror v1.1.1 // indirect
	github.com/hashicorp/go-retryablehttp v0.7.8 // indirect
	github.com/hashicorp/go-rootcerts v1.0.2 // indirect
	github.com/hashicorp/go-secure-stdlib/parseutil v0.2.0 // indirect
	github.com/hashicorp/go-secure-stdlib/strutil v0.1.2 // indirect
	github.com/hashicorp/go-sockaddr v1.0.7 // indirect
	github.com/hashicorp/hcl v1.0.1-vault-7 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/pgx/v5 v5.12.0 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/mattn/go-isatty v0.0.24 // indirect
	github.com/mitchellh/go-homedir v1.1.0 // indirect
	github.com/mitchellh/mapstructure v1.5.0 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/ncruces/go-strftime v1.1.0 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/redis/go-redis/v9 v9.23.0 // indirect
	github.com/remyoudompheng/bigfft v0.0.0-20230129092748-24d4a6f8daec // indirect
	github.com/ryanuber/go-glob v1.0.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/crypto v0.57.0 // indirect
	golang.org/x/net v0.59.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	golang.org/x/time v0.12.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
	modernc.org/libc v1.80.1 // indirect
	modernc.org/mathutil v1.7.1 // indirect
	modernc.org/memory v1.12.1 // indirect
	modernc.org/sqlite v1.62.0 // indirect
)

replace (
	github.com/agentidp/agentidp/libs/config => ../config
	github.com/agentidp/agentidp/libs/sqlstore => ../sqlstore
	github.com/agentidp/agentidp/libs/testkit => ../testkit
)

replace (
	github.com/agentidp/agentidp/libs/authn => ../authn
	github.com/agentidp/agentidp/libs/cache => ../cache
	github.com/agentidp/agentidp/libs/events => ../events
	github.com/agentidp/agentidp/libs/httpx => ../httpx
	github.com/agentidp/agentidp/libs/jose => ../jose
	github.com/agentidp/agentidp/libs/natsbus => ../natsbus
	github.com/agentidp/agentidp/libs/revocation => ../revocation
	github.com/agentidp/agentidp/libs/safehttp => ../safehttp
	github.com/agentidp/agentidp/libs/svcrun => ../svcrun
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
