# gslbd — authoritative DNS + GSLB. `make run` and `make test` do all set-up.
GO      ?= go
BIN     ?= bin
PKGS    := ./...
FUZZTIME ?= 30s

.PHONY: all build run test unit integration deps bench fuzz lint clean generate check-generate vmlinux

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/gslbd ./cmd/gslbctl ./cmd/lbd

# Serve the embedded example zone on 127.0.0.1:5353 (metrics on 127.0.0.1:9153,
# the REST API read-only on 127.0.0.1:9080, state in ./gslbd-state.db).
run: build
	$(BIN)/gslbd -listen 127.0.0.1:5353 -api 127.0.0.1:9080

# Installs the Debian packages the tests drive (dig, kdig, knotd, promtool)
# when missing, then runs unit, component, fuzz-seed and integration tests.
test: deps check-generate
	$(GO) vet $(PKGS)
	$(GO) test -race $(PKGS)

unit:
	$(GO) test -race $$($(GO) list ./... | grep -v /test)

integration: deps
	$(GO) test -count=1 ./test/...

deps:
	@bash test/deps.sh

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./dnsserver/ ./gslb/ ./geo/ ./dataplane/
	$(GO) test -run '^$$' -bench . -benchtime 300000x ./dataplane/xdp/
	$(GO) test -run '^$$' -bench 'LBDDataplane' -benchtime 1x ./test/
	$(GO) test -run '^$$' -bench 'FlipToRouter' ./anycast/
	$(GO) test -run '^$$' -bench 'AnycastBIRD' ./test/
	bash test/bench/run.sh

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzServeDNS$$' -fuzztime $(FUZZTIME) ./dnsserver/
	$(GO) test -run '^$$' -fuzz '^FuzzLoadZone$$' -fuzztime $(FUZZTIME) ./zones/

lint:
	$(GO) vet $(PKGS)
	@if command -v staticcheck >/dev/null; then staticcheck $(PKGS); else echo "staticcheck not installed: go install honnef.co/go/tools/cmd/staticcheck@latest"; fi
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

# Rebuild the BPF objects (committed, so building lbd needs no clang).
generate:
	$(GO) generate ./dataplane/xdp

# Regenerating must give the committed bytes (run by make test when clang-14 is there).
check-generate:
	@if command -v clang-14 >/dev/null && [ -e /usr/include/bpf/bpf_helpers.h ]; then \
		$(GO) generate ./dataplane/xdp && \
		git diff --exit-code --stat -- dataplane/xdp || { echo "make generate changes the committed BPF objects: commit them"; exit 1; }; \
	else echo "check-generate: clang-14 or libbpf-dev missing, skipped"; fi

# Only when moving to a new kernel.
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > dataplane/xdp/bpf/vmlinux.h

clean:
	rm -rf $(BIN) bench-results.txt
