# Parley's everyday commands; CI runs .ci/run, which uses the same ones.
GOTOOL := go tool -modfile=tools/go.mod

.PHONY: generate migration lint test web-test web-apps browser-test bench soak fuzz walkthrough ci run

PARLEY_TEST_POSTGRES ?= postgres://127.0.0.1:5432/test?sslmode=disable

## generate: regenerate Go (gen/), TypeScript (clients/web/src/gen/) and ent code
generate: clients/web/node_modules
	$(GOTOOL) buf generate
	go generate ./ent

## migration: write the next PostgreSQL migration after an ent schema change (name=what_changed)
migration:
	@test -n "$(name)" || (echo "usage: make migration name=what_changed" >&2; exit 1)
	go run ./ent/migrate/migrations/diff $(name)

clients/web/node_modules: clients/web/package-lock.json
	cd clients/web && npm ci --no-audit --no-fund
	touch $@

## lint: buf lint and format, gofmt, go vet
lint:
	$(GOTOOL) buf lint
	$(GOTOOL) buf format --diff --exit-code
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	go vet ./...

## test: the Go tests with the race detector, then the TypeScript client's and the browser tests
test: web-test browser-test
	go test -race ./...
	PARLEY_TEST_POSTGRES='$(PARLEY_TEST_POSTGRES)' go test -race ./...

web-test: clients/web/node_modules
	cd clients/web && npm test

## web-apps: rebuild the web apps into server/internal/webapps/dist (commit the result)
web-apps: clients/web/node_modules
	cd clients/web && npm run build:apps

## browser-test: the browser tests (Debian's chromium at /usr/bin/chromium) against a real parleyd
browser-test: clients/web/node_modules
	cd clients/web && npm run test:browser

## bench: the Go benchmarks (not run by CI; numbers depend on the machine)
bench:
	go test -run '^$$' -bench . -benchmem ./...

## soak: the routing race tests at soak size (1,000 rounds), too slow for every run
soak:
	PARLEY_SOAK=1 go test -race -timeout 60m -run 'Race|Concurrent' ./server/internal/routing/

## fuzz: run every fuzz target for FUZZTIME (default 1m) each
fuzz:
	bash .ci/fuzz $${FUZZTIME:-1m}

## walkthrough: run README.md's grpcurl walk-through against a fresh parleyd
walkthrough:
	bash .ci/walkthrough

## ci: everything CI runs
ci:
	bash .ci/run

## run: parleyd on localhost:8080 with ./parley.db
run:
	go run ./server/cmd/parleyd
