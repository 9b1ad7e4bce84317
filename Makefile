# regmirror — see README.md. Every target works on a fresh clone.
SHELL := /bin/bash
export PATH := $(CURDIR)/bin/tools:$(PATH)
GO ?= go
TEST_TIMEOUT ?= 30m

.PHONY: build test unit deps demo bench lint fmt clean proto demo-images

VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION := $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.revision=$(REVISION)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/regmirror ./cmd/regmirror

## test: every test, unit and end-to-end against real peers (installs them when root).
test: deps lint
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

## unit: the fast tests only (no real peers).
unit:
	$(GO) test -short -count=1 ./...

deps:
	.ci/install-deps

## demo: publish the demo images into out/demo-tree and serve them on localhost.
demo: build
	bin/regmirror demo --out out/demo-tree

## bench: benchmarks with their anchors, side by side in one run (long; not part of test).
## Ratios and medians are what count: these machines are shared and noisy.
## The scale benchmarks (docs/benchmarks.md) take REGMIRROR_SCALE_MANIFESTS and REGMIRROR_SCALE_1M=1;
## with the 1M point BenchmarkScale alone runs for hours, so their time limit grows with it.
SCALE_TIMEOUT ?= $(if $(filter 1,$(REGMIRROR_SCALE_1M)),600m,120m)
bench: build deps
	mkdir -p out
	set -o pipefail; $(GO) test -run '^$$' -bench 'ManifestByTag|BlobRedirect|Load10k|Precompute|Crawl' -count 5 ./redirector ./internal/mirrors ./internal/crawl | tee out/bench.txt
	set -o pipefail; $(GO) test -run '^$$' -bench 'WrkManifest|WrkBlobRedirect|Instructions|TreeLoad|PeakRSS' -benchtime 1x -timeout 60m ./internal/testsupport/e2e | tee -a out/bench.txt
	set -o pipefail; $(GO) test -run '^$$' -bench 'SyncLarge|SyncManySmall|NoopResync' -benchtime 3x -timeout 60m ./internal/testsupport/e2e | tee -a out/bench.txt
	set -o pipefail; $(GO) test -run '^$$' -bench '^BenchmarkServeScale$$' -benchtime 1x -timeout $(SCALE_TIMEOUT) ./internal/testsupport/e2e | tee -a out/bench.txt
	set -o pipefail; $(GO) test -run '^$$' -bench '^BenchmarkScale$$' -benchtime 1x -timeout $(SCALE_TIMEOUT) ./internal/testsupport/e2e | tee -a out/bench.txt

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	staticcheck ./...

## proto: regenerate internal/mirrormanager/mmpb from the vendored mirrormanager.proto, with
## protoc (Debian: protobuf-compiler) and the protoc-gen-go of go.mod's google.golang.org/protobuf.
proto:
	$(GO) build -o bin/tools/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	cd internal/mirrormanager/mmpb && $(GO) generate

## demo-images: rebuild the demo layers embedded in the binary (internal/demoimages/layers) from
## testdata/rootfs and the hello program, reproducibly (same toolchain, same bytes).
demo-images:
	cd internal/demoimages && $(GO) generate

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin out
