package mmpb

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestSchemaMatchesDescriptor reads every field declaration of the vendored schema (label,
// type, name, number, message by message) and checks the generated descriptor against it,
// so the committed code cannot drift from mirrormanager.proto, protoc installed or not.
func TestSchemaMatchesDescriptor(t *testing.T) {
	src, err := os.ReadFile("mirrormanager.proto")
	if err != nil {
		t.Fatal(err)
	}
	fd := File_mirrormanager_proto
	if got, want := string(fd.Package()), "mirrormanager"; got != want {
		t.Errorf("package = %q, want %q", got, want)
	}
	messageRE := regexp.MustCompile(`(?s)message (\w+) \{(.*?)\n\}`)
	fieldRE := regexp.MustCompile(`(required|optional|repeated) (\w+) (\w+) = (\d+);`)
	messages := messageRE.FindAllSubmatch(src, -1)
	if got, want := len(messages), fd.Messages().Len(); got != want {
		t.Fatalf("the schema declares %d messages, the descriptor has %d", got, want)
	}
	for _, m := range messages {
		md := fd.Messages().ByName(protoreflect.Name(m[1]))
		if md == nil {
			t.Errorf("message %s: not in the descriptor", m[1])
			continue
		}
		fields := fieldRE.FindAllSubmatch(m[2], -1)
		if got, want := len(fields), md.Fields().Len(); got != want {
			t.Errorf("message %s: the schema declares %d fields, the descriptor has %d", m[1], got, want)
		}
		for _, f := range fields {
			label, typ, name, num := string(f[1]), string(f[2]), string(f[3]), string(f[4])
			d := md.Fields().ByName(protoreflect.Name(name))
			if d == nil {
				t.Errorf("%s.%s: not in the descriptor", m[1], name)
				continue
			}
			gotType := d.Kind().String()
			if d.Message() != nil {
				gotType = string(d.Message().Name())
			}
			got := d.Cardinality().String() + " " + gotType + " " + name + " = " + strconv.Itoa(int(d.Number()))
			if want := label + " " + typ + " " + name + " = " + num; got != want {
				t.Errorf("%s: descriptor has %q, schema says %q", m[1], got, want)
			}
		}
	}
}

// TestGeneratedCode regenerates mirrormanager.pb.go with protoc and the protoc-gen-go of
// go.mod's google.golang.org/protobuf, and compares it with the committed file (the line
// naming protoc's version aside). It needs protoc (Debian: protobuf-compiler, which
// .ci/install-deps installs).
func TestGeneratedCode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds protoc-gen-go: not a -short test")
	}
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Fatal("protoc not found: run 'make test' (it installs protobuf-compiler as root), or apt-get install protobuf-compiler")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "protoc-gen-go"), "google.golang.org/protobuf/cmd/protoc-gen-go")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building protoc-gen-go: %v\n%s", err, out)
	}
	out := t.TempDir()
	gen := exec.Command(protoc, "--plugin=protoc-gen-go="+filepath.Join(bin, "protoc-gen-go"),
		"--go_out="+out, "--go_opt=paths=source_relative",
		"--go_opt=Mmirrormanager.proto=github.com/regmirror/regmirror/internal/mirrormanager/mmpb", "mirrormanager.proto")
	if b, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	got, err := os.ReadFile(filepath.Join(out, "mirrormanager.pb.go"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("mirrormanager.pb.go")
	if err != nil {
		t.Fatal(err)
	}
	protocLine := regexp.MustCompile(`(?m)^// \tprotoc +v.*$`)
	if !bytes.Equal(protocLine.ReplaceAll(got, nil), protocLine.ReplaceAll(want, nil)) {
		t.Errorf("mirrormanager.pb.go differs from what protoc generates from mirrormanager.proto: run make proto")
	}
}
