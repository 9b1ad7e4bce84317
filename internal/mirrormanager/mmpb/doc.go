// Package mmpb is the Go code protoc-gen-go generates from MirrorManager's protobuf schema
// for the mirrorlist cache: mirrormanager.proto, vendored unchanged from
// adrianreber/mirrorlist-server (commit f199d1f, protos/mirrormanager.proto; byte-identical
// to mirrormanager.proto of fedora-infra/mirrormanager2 at commit 49f0cf26) under its MIT
// licence, whose notice is in LICENSE beside it.
//
// mirrormanager.pb.go is generated, never edited: `make proto` (or `go generate` here, with
// protoc and the protoc-gen-go that go.mod pins on PATH) rebuilds it, and TestGeneratedCode
// checks that the committed file is what the schema gives. The schema has no go_package
// option, so the import path is given to protoc-gen-go with an M flag.
package mmpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go_opt=Mmirrormanager.proto=github.com/regmirror/regmirror/internal/mirrormanager/mmpb mirrormanager.proto
