# AgentIdP — common tasks. `make help` lists them.
SERVICES := gateway token tier analytics webhook did federation billing
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
DATA_DIR ?= .agentidp
# make run ADDR=127.0.0.1:8180 INTERNAL_ADDR=127.0.0.1:9190 NATS_LISTEN=127.0.0.1:4222
ADDR          ?= 127.0.0.1:8080
INTERNAL_ADDR ?= 127.0.0.1:9090
NATS_LISTEN   ?=

.PHONY: help run test lint bench build binaries images tidy

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

run: ## run the whole suite in one process (agentidp dev); ADDR, INTERNAL_ADDR, NATS_LISTEN, DATA_DIR settable
	cd cmd/agentidp && go run . dev --data $(abspath $(DATA_DIR)) --addr $(ADDR) --internal-addr $(INTERNAL_ADDR)$(if $(NATS_LISTEN), --nats-listen $(NATS_LISTEN))

test: ## vet and race-test every module (needs PostgreSQL and Redis, see README)
	./scripts/test.sh

lint: ## gofmt, go vet, go mod tidy and go.work.sum check on every module
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	@# go.work.sum must already hold every checksum the workspace needs, or a
	@# fresh clone's first go command dirties the tree.
	@go list -m all >/dev/null && go list -deps -test $$(go list -m -f '{{.Dir}}/...') >/dev/null
	@git diff --exit-code --stat go.work.sum || { echo "go.work.sum was incomplete: commit the change above"; exit 1; }
	go vet $$(go list -m -f '{{.Dir}}/...')
	@for m in $$(go list -m -f '{{.Dir}}'); do (cd $$m && GOWORK=off go mod tidy -diff) || exit 1; done

bench: ## Go benchmarks of the hot paths (token issuance, gateway, JWT)
	go test -run '^$$' -bench . -benchmem -benchtime 2s ./libs/jose/... ./services/token/... ./services/gateway/...

build: binaries ## alias for binaries

binaries: ## build every service binary statically, as the images do
	@mkdir -p bin
	@for s in $(SERVICES); do \
		(cd services/$$s && CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o ../../bin/$$s ./cmd/$$s) || exit 1; \
		echo "built bin/$$s"; done
	cd cmd/agentidp && CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o ../../bin/agentidp .
	@echo "built bin/agentidp"

images: ## build the container images (needs a Docker engine)
	@for s in $(SERVICES); do docker build -f deploy/docker/Dockerfile --build-arg SERVICE=$$s --build-arg VERSION=$(VERSION) -t agentidp/$$s:$(VERSION) . || exit 1; done
	docker build -f deploy/docker/Dockerfile.agentidp --build-arg VERSION=$(VERSION) -t agentidp/agentidp:$(VERSION) .

tidy: ## add local replace directives where needed, then go mod tidy every module
	python3 scripts/sync-replaces.py
	@for m in $$(go list -m -f '{{.Dir}}'); do (cd $$m && GOWORK=off go mod tidy) || exit 1; done
