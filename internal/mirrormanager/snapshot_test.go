package mirrormanager

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

func mustDecode(t *testing.T, c cacheSpec) *Snapshot {
	t.Helper()
	b, _ := c.Encode()
	s, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return s
}

func hostsString(hs []Host) string {
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "\n\t%+v", h)
	}
	return b.String()
}

func TestHosts(t *testing.T) {
	packed := fixture()
	packed.Packed = true
	noSkipped := fixture()
	noSkipped.Skipped = false
	specs := []struct {
		name string
		spec cacheSpec
	}{
		{"as MirrorManager writes it", fixture()},
		{"packed repeated int64", packed},
		{"without the skipped fields", noSkipped},
	}
	for _, sc := range specs {
		t.Run(sc.name, func(t *testing.T) {
			s := mustDecode(t, sc.spec)
			got, err := s.Hosts("pub/fedora/containers")
			if err != nil {
				t.Fatal(err)
			}
			if want := fixtureHosts(); !reflect.DeepEqual(got, want) {
				t.Errorf("Hosts:\ngot:%s\nwant:%s", hostsString(got), hostsString(want))
			}
			if got, want := s.Time, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
				t.Errorf("Time = %v, want %v", got, want)
			}
		})
	}
}

func TestHostsPerDirectory(t *testing.T) {
	s := mustDecode(t, fixture())
	tests := []struct {
		name, dir string
		wantIDs   []int64
		wantURLs  []string // URLs of the first host
	}{
		{"stale host listed where it is up to date", "pub/fedora/linux", []int64{7}, []string{"https://stale.example/fedora/linux/"}},
		{"empty subpath: the category's top directory", "pub/fedora", []int64{1}, []string{"https://de-big.example/pub/fedora/"}},
		{"no Subpath field", "pub/alt", []int64{2}, []string{"http://de-small.example/fedora/"}},
		{"surrounding and doubled slashes, as mirrorlist-server normalizes path=", "/pub//fedora/linux/", []int64{7}, []string{"https://stale.example/fedora/linux/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hosts, err := s.Hosts(tt.dir)
			if err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for _, h := range hosts {
				ids = append(ids, h.ID)
			}
			if !slices.Equal(ids, tt.wantIDs) {
				t.Fatalf("host IDs = %v, want %v", ids, tt.wantIDs)
			}
			if got := hosts[0].URLs; !slices.Equal(got, tt.wantURLs) {
				t.Errorf("URLs = %q, want %q", got, tt.wantURLs)
			}
		})
	}
}

func TestStaleHostKeepsItsDataForOtherDirectories(t *testing.T) {
	s := mustDecode(t, fixture())
	hosts, err := s.Hosts("pub/fedora/linux")
	if err != nil {
		t.Fatal(err)
	}
	want := Host{ID: 7, Name: "mm-host-7", Country: "DE", Bandwidth: 5000,
		Netblocks: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")},
		ASNs:      []uint32{64999},
		URLs:      []string{"https://stale.example/fedora/linux/"}}
	if len(hosts) != 1 || !reflect.DeepEqual(hosts[0], want) {
		t.Errorf("Hosts(pub/fedora/linux):\ngot:%s\nwant:%s", hostsString(hosts), hostsString([]Host{want}))
	}
}

func TestUnknownDirectory(t *testing.T) {
	s := mustDecode(t, fixture())
	_, err := s.Hosts("pub/fedora/nope")
	if err == nil {
		t.Fatal("Hosts(unknown) succeeded")
	}
	for _, want := range []string{`"pub/fedora/nope"`, "pub/alt", "pub/fedora/containers", "pub/fedora/linux"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}

	many := fixture()
	for i := range 10 {
		many.Dirs = append(many.Dirs, dirSpec{Name: fmt.Sprintf("pub/z%02d", i)})
	}
	_, err = mustDecode(t, many).Hosts("x")
	if err == nil || !strings.Contains(err.Error(), "14 in all") || strings.Contains(err.Error(), "pub/z09") {
		t.Errorf("error with 14 directories = %v, want the first few and a count of 14", err)
	}
}

func TestJoinURL(t *testing.T) {
	tests := []struct{ name, base, subpath, want string }{
		{"MirrorManager URL and subpath", "https://m.example/pub/fedora", "containers", "https://m.example/pub/fedora/containers/"},
		{"nested subpath", "https://m.example/fedora", "linux/releases/42", "https://m.example/fedora/linux/releases/42/"},
		{"no subpath", "https://m.example/fedora", "", "https://m.example/fedora/"},
		{"trailing slash on the URL", "https://m.example/fedora/", "containers", "https://m.example/fedora/containers/"},
		{"slashes around the subpath", "https://m.example/fedora", "/containers/", "https://m.example/fedora/containers/"},
		{"server root", "http://m.example", "containers", "http://m.example/containers/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := JoinURL(tt.base, tt.subpath)
			if got != tt.want {
				t.Errorf("JoinURL(%q, %q) = %q, want %q", tt.base, tt.subpath, got, tt.want)
			}
			if blob := got + "blobs/sha256/ab"; strings.Contains(strings.TrimPrefix(strings.TrimPrefix(blob, "https://"), "http://"), "//") {
				t.Errorf("blob URL %q has a doubled slash", blob)
			}
		})
	}
}

func TestOverrides(t *testing.T) {
	s := mustDecode(t, fixture())
	countries := []struct {
		name, addr, want string
		ok               bool
	}{
		{"in the wide netblock", "100.64.9.9", "JP", true},
		{"most specific netblock wins", "100.64.1.1", "BR", true},
		{"IPv4-mapped IPv6", "::ffff:100.64.9.9", "JP", true},
		{"no override", "8.8.8.8", "", false},
	}
	for _, tt := range countries {
		t.Run("country "+tt.name, func(t *testing.T) {
			got, ok := s.ClientCountry(netip.MustParseAddr(tt.addr))
			if got != tt.want || ok != tt.ok {
				t.Errorf("ClientCountry(%s) = %q, %v; want %q, %v", tt.addr, got, ok, tt.want, tt.ok)
			}
		})
	}
	continents := []struct {
		name, country, want string
		ok                  bool
	}{
		{"redirected, any case", "RU", "EU", true},
		{"not redirected", "DE", "", false},
	}
	for _, tt := range continents {
		t.Run("continent "+tt.name, func(t *testing.T) {
			got, ok := s.ContinentRedirect(tt.country)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ContinentRedirect(%s) = %q, %v; want %q, %v", tt.country, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good, _ := fixture().Encode()
	path := filepath.Join(dir, "mirrorlist_cache.proto")
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, "pub/fedora/containers")
	if err != nil {
		t.Fatal(err)
	}
	if want := fixtureHosts(); !reflect.DeepEqual(got, want) {
		t.Errorf("Load:\ngot:%s\nwant:%s", hostsString(got), hostsString(want))
	}

	tests := []struct {
		name, dir string
		data      []byte
		want      string
	}{
		{"truncated file", "pub/fedora/containers", good[:len(good)-3], "mirrorlist cache " + path + ": truncated at byte"},
		{"empty file", "pub/fedora/containers", nil, "mirrorlist cache " + path + ": empty file"},
		{"unknown directory", "pub/nope", good, "mirrorlist cache " + path + `: no directory "pub/nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path, tt.dir)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Load error = %v, want prefix %q", err, tt.want)
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "missing"), "x"); err == nil || !strings.Contains(err.Error(), "mirrorlist cache") {
		t.Errorf("Load(missing file) error = %v, want one naming the mirrorlist cache", err)
	}
}

// TestEveryTruncationRefused cuts the fixture at every byte: a cut inside a top-level
// field is refused with "truncated" or "malformed"; a cut at a field boundary is a valid,
// smaller message (protobuf has no end marker) and must decode.
func TestEveryTruncationRefused(t *testing.T) {
	b, boundaries := fixture().Encode()
	for n := 0; n < len(b); n++ {
		_, err := Decode(b[:n])
		atBoundary := slices.Contains(boundaries, n)
		switch {
		case n == 0:
			if err == nil {
				t.Errorf("Decode(empty) succeeded")
			}
		case atBoundary && err != nil:
			t.Errorf("Decode(first %d bytes, a field boundary) = %v, want success", n, err)
		case !atBoundary && err == nil:
			t.Errorf("Decode(first %d of %d bytes) succeeded, want an error", n, len(b))
		case !atBoundary && !strings.Contains(err.Error(), "truncated at byte") && !strings.Contains(err.Error(), "malformed"):
			t.Errorf("Decode(first %d bytes) = %v, want truncated or malformed", n, err)
		}
	}
}

func TestDecodeRefused(t *testing.T) {
	good, _ := fixture().Encode()
	noTime := fixture()
	noTime.NoTime = true
	noTimeBytes, _ := noTime.Encode()
	noDir := fixture()
	noDir.Dirs[1].NoDirField = true
	noDirBytes, _ := noDir.Encode()
	badASN := fixture()
	badASN.HostASN = append(badASN.HostASN, idInts{ID: 1 << 33, IDs: []int64{1}})
	badASNBytes, _ := badASN.Encode()
	negASN := fixture()
	negASN.HostASN = append(negASN.HostASN, idInts{ID: -1, IDs: []int64{1}})
	negASNBytes, _ := negASN.Encode()

	msg := func(num protowire.Number, body []byte) []byte {
		return appendMsg(appendInt(nil, fieldTime, 1), num, body)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty file"},
		{"YAML text", []byte("mirrors:\n  - name: x\n"), "field MirrorList.HostBandwidthCache (13) at byte 0: wrong wire type fixed32"},
		{"gzip header", []byte{0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 3}, "malformed protobuf at byte 0 (in MirrorList): cannot parse reserved wire type"},
		{"truncated length", good[:len(good)-1], "truncated at byte"},
		{"length beyond the end", append(appendInt(nil, fieldTime, 1), 0x82, 0x01, 0xff, 0xff, 0x03), "truncated at byte 2"},
		{"varint overflow", append([]byte{0x08}, bytes.Repeat([]byte{0xff}, 11)...), "malformed protobuf at byte 0"},
		{"field number zero", []byte{0x00, 0x01}, "malformed protobuf at byte 0"},
		{"Time as a string", appendStr(nil, fieldTime, "now"), "field MirrorList.Time (1) at byte 0: wrong wire type length-delimited, want varint"},
		{"Time missing", noTimeBytes, "required field MirrorList.Time (1) missing"},
		{"HostCountryCache as a varint", appendInt(appendInt(nil, fieldTime, 1), fieldHostCountryCache, 7), "field MirrorList.HostCountryCache (12) at byte 2: wrong wire type varint, want length-delimited"},
		{"HCUrlCache key as a string", msg(fieldHCUrlCache, appendStr(appendStr(nil, fieldKey, "1"), fieldValue, "u")), "field MirrorList.HCUrlCache.key (1) at byte 4: wrong wire type"},
		{"HCUrlCache without value", msg(fieldHCUrlCache, appendInt(nil, fieldKey, 1)), "field MirrorList.HCUrlCache (4) at byte 2: required value missing"},
		{"HostBandwidthCache without key", msg(fieldHostBandwidthCache, appendInt(nil, fieldValue, 1)), "required key missing"},
		{"ByHostId value as a fixed64", msg(fieldMirrorListCache, appendMsg(appendStr(nil, fieldDirectory, "d"), fieldByHostID,
			protowire.AppendFixed64(protowire.AppendTag(appendInt(nil, fieldKey, 1), fieldValue, protowire.Fixed64Type), 9))),
			"field MirrorList.MirrorListCache.ByHostId.value (2)"},
		{"packed run truncated", msg(fieldMirrorListCache, appendMsg(appendStr(nil, fieldDirectory, "d"), fieldGlobal, []byte{0x80})), "truncated at byte 10"},
		{"directory missing", noDirBytes, "required directory missing"},
		{"ASN beyond 32 bits", badASNBytes, "ASN 8589934592 out of range"},
		{"negative ASN", negASNBytes, "ASN -1 out of range"},
		{"Time beyond any date", appendInt(nil, fieldTime, -1), "is not a time"},
		{"a directory beyond MaxRecords", msg(fieldMirrorListCache, appendMsg(appendStr(nil, fieldDirectory, "d"), fieldGlobal, make([]byte, MaxRecords))),
			fmt.Sprintf("more than %d records in a directory's lists", MaxRecords)},
		{"ASN table beyond MaxRecords", msg(number(mirrorListDesc, "HostAsnCache"), appendMsg(appendInt(nil, fieldKey, 1), fieldValue, make([]byte, MaxRecords))),
			fmt.Sprintf("more than %d records in the cache's tables", MaxRecords)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Decode(tt.data)
			if err == nil {
				t.Fatalf("Decode succeeded (%d directories), want error containing %q", len(s.Directories()), tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDecodeAcceptsUnknownFields(t *testing.T) {
	b, _ := fixture().Encode()
	// A field the schema does not have, of every wire type, including a group.
	b = appendInt(b, 99, 5)
	b = protowire.AppendFixed32(protowire.AppendTag(b, 100, protowire.Fixed32Type), 1)
	b = protowire.AppendFixed64(protowire.AppendTag(b, 101, protowire.Fixed64Type), 1)
	b = appendStr(b, 102, "future")
	b = protowire.AppendTag(b, 103, protowire.StartGroupType)
	b = appendInt(b, 1, 1)
	b = protowire.AppendTag(b, 103, protowire.EndGroupType)
	s, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode with unknown fields: %v", err)
	}
	got, err := s.Hosts("pub/fedora/containers")
	if err != nil || !reflect.DeepEqual(got, fixtureHosts()) {
		t.Errorf("Hosts after unknown fields = %v, %v; want the fixture's hosts", hostsString(got), err)
	}
}

// TestProtocEncoded reads a cache that protoc encoded from MirrorManager's own schema
// (testdata/protoc-sample.txtpb says how), so the decoder is checked against an encoder
// that is not this package's.
func TestProtocEncoded(t *testing.T) {
	s, err := LoadSnapshot("testdata/protoc-sample.bin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir string
		want      []Host
	}{
		{"containers", "pub/fedora/containers", []Host{
			{ID: 1, Name: "mm-host-1", Country: "DE", Bandwidth: 1000, AllowedCountries: []string{"DE", "AT"},
				URLs: []string{"https://a.example/pub/fedora/containers/", "http://a.example/pub/fedora/containers/"}},
			{ID: 2, Name: "mm-host-2", Country: "FR", Bandwidth: 10, Private: true, Internet2: true,
				Netblocks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::1/128")},
				ASNs:      []uint32{64500, 4200000000},
				URLs:      []string{"http://b.example/fedora/containers/"}},
		}},
		{"top directory, empty subpath", "pub/fedora", []Host{
			{ID: 1, Name: "mm-host-1", Country: "DE", Bandwidth: 1000, AllowedCountries: []string{"DE", "AT"},
				URLs: []string{"https://a.example/pub/fedora/"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Hosts(tt.dir)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Hosts(%s):\ngot:%s\nwant:%s", tt.dir, hostsString(got), hostsString(tt.want))
			}
		})
	}
	if got, want := s.Time, time.Unix(1767225600, 0).UTC(); !got.Equal(want) {
		t.Errorf("Time = %v, want %v", got, want)
	}
	if got, ok := s.ClientCountry(netip.MustParseAddr("100.64.0.1")); got != "JP" || !ok {
		t.Errorf("ClientCountry = %q, %v; want JP, true", got, ok)
	}
	if got, ok := s.ContinentRedirect("RU"); got != "EU" || !ok {
		t.Errorf("ContinentRedirect(RU) = %q, %v; want EU, true", got, ok)
	}
}
