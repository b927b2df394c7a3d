module github.com/agentidp/agentidp/services/gateway

go 1.26.0

require (
	github.com/agentidp/agentidp/libs/authn v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/cache v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/config v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/events v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/httpx v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/jose v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/natsbus v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/revocation v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/svcrun v0.0.0-00010101000000-000000000000
	github.com/agentidp/agentidp/libs/testkit v0.0.0
	github.com/agentidp/agentidp/policies v0.0.0-00010101000000-000000000000
	github.com/google/uuid v1.6.0
	github.com/nats-io/nats.go v1.55.0
	github.com/open-policy-agent/opa v1.22.3
	github.com/prometheus/client_golang v1.25.0
	github.com/sony/gobreaker/v2 v2.4.0
	golang.org/x/sync v0.24.0
)

require (
	github.com/agentidp/agentidp/libs/sqlstore v0.0.0-00010101000000-000000000000 // indirect
	github.com/agnivade/levenshtein v1.2.2 // indirect
	github.com/antithesishq/antithesis-sdk-go v0.8.0-default-no-op // indirect
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/decred/dcrd/dcrec/secp256k1/v4 v4.4.1 // indirect
	github.com/dustin/go-humanize v1.1.0 // indirect
	github.com/gobwas/glob v1.1.0 // indirect
	github.com/goccy/go-json v0.11.2 // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/pgx/v5 v5.12.0 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/kylelemons/godebug v1.1.0 // indirect
	github.com/labstack/echo/v4 v4.16.0 // indirect
	github.com/labstack/gommon v0.5.0 // indirect
	github.com/lestrrat-go/blackmagic v1.0.4 // indirect
	github.com/lestrrat-go/dsig v1.4.0 // indirect
	github.com/lestrrat-go/dsig-secp256k1 v1.0.0 // indirect
	github.com/lestrrat-go/httpcc v1.0.1 // indirect
	github.com/lestrrat-go/httprc/v3 v3.0.6 // indirect
	github.com/lestrrat-go/jwx/v3 v3.4.0 // indirect
	github.com/lestrrat-go/option/v2 v2.0.0 // indirect
	github.com/mattn/go-colorable v0.1.15 // indirect
	github.com/mattn/go-isatty v0.0.24 // indirect
	github.com/minio/highwayhash v1.0.4 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/nats-io/jwt/v2 v2.8.2 // indirect
	github.com/nats-io/nats-server/v2 v2.15.2 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/ncruces/go-strftime v1.1.0 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/redis/go-redis/v9 v9.23.0 // indirect
	github.com/remyoudompheng/bigfft v0.0.0-20230129092748-24d4a6f8daec // indirect
	github.com/segmentio/asm v1.2.1 // indirect
	github.com/sirupsen/logrus v1.10.2 // indirect
	github.com/valyala/bytebufferpool v1.0.0 // indirect
	github.com/valyala/fastjson v1.6.10 // indirect
	github.com/valyala/fasttemplate v1.2.2 // indirect
	github.com/vektah/gqlparser/v2 v2.5.64 // indirect
	github.com/xeipuuv/gojsonpointer v0.0.0-20190905194746-02993c407bfb // indirect
	github.com/xeipuuv/gojsonreference v0.0.0-20180127040603-bd5ef7bd5415 // indirect
	github.com/yashtewari/glob-intersection v0.2.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	golang.org/x/time v0.16.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
	modernc.org/libc v1.80.1 // indirect
	modernc.org/mathutil v1.7.1 // indirect
	modernc.org/memory v1.12.1 // indirect
	modernc.org/sqlite v1.62.0 // indirect
)

replace (
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
)

replace (
	github.com/agentidp/agentidp/libs/revocation => ../../libs/revocation
	github.com/agentidp/agentidp/libs/safehttp => ../../libs/safehttp
	github.com/agentidp/agentidp/libs/secrets => ../../libs/secrets
	github.com/agentidp/agentidp/services/analytics => ../analytics
	github.com/agentidp/agentidp/services/billing => ../billing
	github.com/agentidp/agentidp/services/did => ../did
	github.com/agentidp/agentidp/services/federation => ../federation
	github.com/agentidp/agentidp/services/tier => ../tier
	github.com/agentidp/agentidp/services/token => ../token
	github.com/agentidp/agentidp/services/webhook => ../webhook
)
