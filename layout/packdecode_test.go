package layout

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// packDigest is a valid digest for the cases below.
var packDigest = DigestOf("sha256", []byte("x")).String()

// decodePackCases are packs whose records leave the usual shape (fastManifest, fastBlob) or
// break the JSON grammar; decodePack must decode each as decodeMetaDoc does.
var decodePackCases = func() []struct{ name, js string } {
	rec := func(field, v string) string {
		return `{"format":3,"kind":"pack","` + field + `":{"` + packDigest + `":` + v + `}}`
	}
	m := func(v string) string { return rec("manifests", v) }
	b := func(v string) string { return rec("blobs", v) }
	r := func(v string) string { return `{"format":3,"kind":"pack","repositories":{"r":` + v + `}}` }
	return []struct{ name, js string }{
		{"manifest", m(`{"mediaType":"application/json","data":"e30="}`)},
		{"manifest spaced", m(" {\n\t\"data\" : \"e30=\" ,\r\"mediaType\" : \"a\" } ")},
		{"escaped media type", m(`{"mediaType":"a\/b\n\"","data":"e30="}`)},
		{"unicode escape in media type", m(`{"mediaType":"\u0061\u00e9\ud83d\ude00","data":"e30="}`)},
		{"bad surrogate in media type", m(`{"mediaType":"\ud800x","data":"e30="}`)},
		{"non-ASCII media type", m(`{"mediaType":"é","data":"e30="}`)},
		{"invalid UTF-8 media type", m("{\"mediaType\":\"\xff\xfe\",\"data\":\"e30=\"}")},
		{"escaped data", m(`{"mediaType":"a","data":"e3\u0030="}`)},
		{"data with an escaped newline", m(`{"mediaType":"a","data":"e3\n0="}`)},
		{"null data", m(`{"mediaType":"a","data":null}`)},
		{"empty data", m(`{"mediaType":"a","data":""}`)},
		{"no data", m(`{"mediaType":"a"}`)},
		{"empty manifest", m(`{}`)},
		{"null manifest", m(`null`)},
		{"null media type", m(`{"mediaType":null}`)},
		{"number media type", m(`{"mediaType":1}`)},
		{"unknown field", m(`{"mediaType":"a","data":"e30=","x":[1,{"y":null}]}`)},
		{"upper-case fields", m(`{"MEDIATYPE":"a","Data":"e30="}`)},
		{"Kelvin-sign field", m("{\"mediaType\":\"a\",\"data\":\"e30=\",\"\u212aind\":1}")},
		{"escaped field name", m(`{"medi\u0061Type":"a","data":"e30="}`)},
		{"duplicate fields", m(`{"mediaType":"a","data":"e30=","mediaType":"b","data":""}`)},
		{"duplicate records", `{"format":3,"kind":"pack","manifests":{"` + packDigest + `":{"data":"e30="},"` + packDigest + `":{"mediaType":"b"}}}`},
		{"invalid base64", m(`{"mediaType":"a","data":"e30"}`)},
		{"base64 with bad characters", m(`{"mediaType":"a","data":"e3!="}`)},
		{"data not a string", m(`{"mediaType":"a","data":[1]}`)},
		{"manifest not an object", m(`[]`)},
		{"trailing comma", m(`{"mediaType":"a",}`)},
		{"missing colon", m(`{"mediaType" "a"}`)},
		{"blob", b(`{"size":12,"since":3,"subsets":5,"former":2}`)},
		{"blob with times", b(`{"size":12,"since":3,"retired":"2026-01-01T00:00:00Z","left":"2026-01-02T00:00:00+01:00"}`)},
		{"negative size", b(`{"size":-12}`)},
		{"negative since", b(`{"since":-1}`)},
		{"minus zero", b(`{"size":-0}`)},
		{"fraction", b(`{"size":1.5}`)},
		{"exponent", b(`{"size":1e3}`)},
		{"large size", b(`{"size":9223372036854775807}`)},
		{"overflowing size", b(`{"size":9223372036854775808}`)},
		{"largest since", b(`{"since":18446744073709551615}`)},
		{"overflowing since", b(`{"since":18446744073709551616}`)},
		{"leading zero", b(`{"size":01}`)},
		{"null size", b(`{"size":null}`)},
		{"string size", b(`{"size":"1"}`)},
		{"duplicate size", b(`{"size":1,"size":2}`)},
		{"upper-case size", b(`{"Size":1}`)},
		{"repository", r(`{"tags":{"t":"` + packDigest + `","u":"` + packDigest + `"},"manifests":["` + packDigest + `"],"blobs":[],"retiring":["` + packDigest + `"],"retiringBlobs":[]}`)},
		{"repository spaced", r(" { \"tags\" : { \"t\" : \"" + packDigest + "\" } , \"manifests\" : [ \"" + packDigest + "\" , \"" + packDigest + "\" ] } ")},
		{"empty repository", r(`{}`)},
		{"repository with everything", r(`{"tags":{},"referrers":{},"archived":["t"],"removed":{"t":"2026-01-01T00:00:00Z"}}`)},
		{"repository duplicate tags", r(`{"tags":{"t":"` + packDigest + `"},"tags":{"u":"` + packDigest + `"}}`)},
		{"repository duplicate tag", r(`{"tags":{"t":"sha256:00","t":"` + packDigest + `"}}`)},
		{"repository bad digest", r(`{"manifests":["sha256:00"]}`)},
		{"repository bad tag digest", r(`{"tags":{"t":"sha256:00"}}`)},
		{"repository escaped tag", r(`{"tags":{"\u0074":"` + packDigest + `"}}`)},
		{"repository non-ASCII tag", r(`{"tags":{"é":"` + packDigest + `"}}`)},
		{"repository escaped digest", r(`{"manifests":["sha256:\u0032` + packDigest[8:] + `"]}`)},
		{"repository null lists", r(`{"tags":null,"manifests":null,"retiring":null}`)},
		{"repository null digest", r(`{"blobs":[null]}`)},
		{"repository number list", r(`{"blobs":[1]}`)},
		{"upper-case repository fields", r(`{"Tags":{},"MANIFESTS":[]}`)},
		{"garbage after a record", `{"format":3,"kind":"pack","manifests":{"` + packDigest + `":{}0}}`},
		{"garbage after a member", `{"format":3,"kind":"pack","x":1 2}`},
		{"bad digest key", `{"format":3,"kind":"pack","blobs":{"sha256:00":{}}}`},
		{"escaped digest key", `{"format":3,"kind":"pack","blobs":{"sha256:\u0032` + packDigest[8:] + `":{}}}`},
		{"null map", `{"format":3,"kind":"pack","blobs":null}`},
		{"map not an object", `{"format":3,"kind":"pack","blobs":[]}`},
		{"upper-case map", `{"format":3,"kind":"pack","BLOBS":{"` + packDigest + `":{"size":1}}}`},
		{"truncated", m(`{"mediaType":"a","data":"e30=`)},
		{"truncated number", `{"format":3,"kind":"pack","blobs":{"` + packDigest + `":{"size":1`},
		{"data after", m(`{}`) + ` {}`},
		{"space after", m(`{}`) + " \n"},
		{"header escaped", `{"form\u0061t":3,"kind":"pack"}`},
		{"header reversed", `{"kind":"pack","format":3}`},
		{"deep unknown field", `{"format":3,"kind":"pack","x":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`},
		{"too deep unknown field", `{"format":3,"kind":"pack","x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`},
		{"deep record", m(`{"x":` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `}`)},
		{"too deep record", m(`{"x":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`)},
		{"literals", m(`{"x":[true,false,null,-1.5e+3,0,"\t"]}`)},
		{"bad literal", m(`{"x":nul}`)},
		{"control character", m("{\"mediaType\":\"a\tb\"}")},
		{"bad escape", m(`{"mediaType":"a\xb"}`)},
	}
}()

// TestDecodePackCases checks each case read whole and a byte at a time.
func TestDecodePackCases(t *testing.T) {
	for _, c := range decodePackCases {
		t.Run(c.name, func(t *testing.T) {
			checkDecodePack(t, c.js, strings.NewReader(c.js))
			checkDecodePack(t, c.js, iotest.OneByteReader(strings.NewReader(c.js)))
			checkDecodePack(t, c.js, iotest.DataErrReader(strings.NewReader(c.js)))
		})
	}
}

// FuzzScanValue checks that scanValue accepts exactly what json.Valid does, and that the
// record fast paths give what json.Unmarshal gives for what they accept.
func FuzzScanValue(f *testing.F) {
	for _, c := range decodePackCases {
		f.Add(c.js)
	}
	f.Add(`{"mediaType":"a","data":"e30="}`)
	f.Add(`{"size":1,"since":2}`)
	f.Add(`{"tags":{"t":"` + packDigest + `"},"manifests":["` + packDigest + `"]}`)
	f.Fuzz(func(t *testing.T, js string) {
		b := []byte(js + " ")
		n, st := scanValue(b, 0)
		if got, want := st == scanDone && skipSpace(b, n) == len(b), json.Valid(b); got != want {
			t.Fatalf("scanValue: %v (%d, %d), json.Valid %v", got, n, st, want)
		}
		if st != scanDone {
			return
		}
		raw := b[:n]
		if got, ok := fastManifest(raw); ok {
			var want *Manifest
			if err := json.Unmarshal(raw, &want); err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("fastManifest %+v, json.Unmarshal %+v (%v)", got, want, err)
			}
		}
		if got, ok := fastRepository(raw); ok {
			var want *Repository
			if err := json.Unmarshal(raw, &want); err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("fastRepository %+v, json.Unmarshal %+v (%v)", got, want, err)
			}
		}
		if got, ok := fastBlob(raw); ok {
			var want *Blob
			if err := json.Unmarshal(raw, &want); err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("fastBlob %+v, json.Unmarshal %+v (%v)", got, want, err)
			}
		}
	})
}

// TestFastRecords checks that the records a pack holds take the fast paths, with what
// json.Unmarshal gives.
func TestFastRecords(t *testing.T) {
	g := &metaGen{rng: rand.New(rand.NewPCG(7, 7)), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := g.meta()
	for range 3 {
		g.promote(m)
	}
	m.Manifests[DigestOf("sha256", nil)] = &Manifest{MediaType: MediaTypeOCIManifest, Data: []byte{}}
	checkFast(t, "manifest", m.Manifests, fastManifest)
	checkFast(t, "blob", m.Blobs, func(raw []byte) (*Blob, bool) {
		if bytes.Contains(raw, []byte(`"retired"`)) || bytes.Contains(raw, []byte(`"left"`)) {
			return nil, true // times take json.Unmarshal
		}
		return fastBlob(raw)
	})
	usual := map[string]bool{"tags": true, "manifests": true, "blobs": true, "retiring": true, "retiringBlobs": true}
	checkFast(t, "repository", m.Repositories, func(raw []byte) (*Repository, bool) {
		if !fastObject(raw, func(key, _ []byte) bool { return usual[string(key)] }) {
			return nil, true // referrers, archived and removed take json.Unmarshal
		}
		return fastRepository(raw)
	})
}

func checkFast[K comparable, V any](t *testing.T, what string, records map[K]*V, fast func([]byte) (*V, bool)) {
	t.Helper()
	if len(records) == 0 {
		t.Fatalf("no %s records", what)
	}
	for k, r := range records {
		raw, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := fast(raw)
		if !ok {
			t.Fatalf("%s %v: %s not taken by the fast path", what, k, raw)
		}
		if got != nil && !reflect.DeepEqual(got, r) {
			t.Fatalf("%s %v: got %+v, want %+v", what, k, got, r)
		}
	}
}
