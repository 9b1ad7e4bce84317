package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/testsupport/peers"
)

// scaleSource is the scale benchmark's synthetic source registry (issue 10): a deterministic
// registry speaking the pull API, in this process, answering fast so that what a benchmark
// measures is the generator's own cost. It has repos repositories "bench/rNNNNN" of
// tagsPerRepo tags "tNNNNNN" each; every tag is a two-arch OCI index (linux/amd64,
// linux/arm64) of two image manifests, each with a config and three uncompressed tar layers:
// one shared by every image of its architecture, one shared by the images of its repository
// and architecture, one of its own. Every byte is computed from (repository, tag, version) on
// request; what it keeps is a digest → origin map (24 bytes a blob, filled as tags are built),
// the versions of promoted tags and the tags added by promotions.
//
// It answers GET /v2/, the catalog and tag lists (paginated with n and last, a Link header
// to the next page), HEAD and GET of manifests by tag or digest, HEAD and GET of blobs, and
// 404 to the referrers API; it counts the requests of each kind.
type scaleSource struct {
	repos, tagsPerRepo int
	URL                string
	srv                *http.Server

	mu       sync.RWMutex
	version  map[uint64]uint32 // repo<<32 | tag → version (absent: 0)
	added    []int             // per repository, tags added after the first tagsPerRepo
	promoted int               // promotions so far
	byDigest map[[32]byte]scaleBlob
	heads    map[uint64]scaleHead // repo<<32 | tag → its index's digest and size

	shared sync.Map // scaleBlob (kind layerShared/layerRepo) → []byte

	counts [scaleKinds]atomic.Int64
}

// The request kinds counted.
const (
	scaleCatalog = iota
	scaleTags
	scaleHeadManifest
	scaleGetManifest
	scaleHeadBlob
	scaleGetBlob
	scaleReferrers
	scaleOther
	scaleKinds
)

var scaleKindNames = [scaleKinds]string{"catalog", "tags/list", "HEAD manifest", "GET manifest", "HEAD blob", "GET blob", "referrers", "other"}

// scaleHead is what a HEAD of a tag answers.
type scaleHead struct {
	ver, size uint32
	sum       [32]byte
}

// scaleBlob says where a digest comes from.
type scaleBlob struct {
	kind           uint8 // scaleIndex…scaleLayerUnique
	arch           uint8 // 0 amd64, 1 arm64
	repo, tag, ver uint32
}

const (
	scaleIndex = iota
	scaleImage
	scaleConfig
	scaleLayerShared
	scaleLayerRepo
	scaleLayerUnique
)

var scaleArchs = [2]string{"amd64", "arm64"}

const (
	scaleMediaIndex  = "application/vnd.oci.image.index.v1+json"
	scaleMediaImage  = "application/vnd.oci.image.manifest.v1+json"
	scaleMediaConfig = "application/vnd.oci.image.config.v1+json"
	scaleMediaLayer  = "application/vnd.oci.image.layer.v1.tar"
)

// newScaleSource starts a source of repos × tagsPerRepo tags (3 manifests each) on a free
// loopback port; it stops when the test ends.
func newScaleSource(t testing.TB, repos, tagsPerRepo int) *scaleSource {
	t.Helper()
	s := newScaleContent(repos, tagsPerRepo)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("scale source: %v", err)
	}
	s.URL = "http://" + l.Addr().String()
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(l) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

// newScaleContent is the source's content without its server (URL empty): what a benchmark
// that writes the tree's metadata itself builds from (scaleMeta).
func newScaleContent(repos, tagsPerRepo int) *scaleSource {
	return &scaleSource{
		repos: repos, tagsPerRepo: tagsPerRepo,
		version:  map[uint64]uint32{},
		added:    make([]int, repos),
		byDigest: map[[32]byte]scaleBlob{},
		heads:    map[uint64]scaleHead{},
	}
}

// tagCount is the number of tags repository r has now.
func (s *scaleSource) tagCount(r int) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tagsPerRepo + s.added[r]
}

// Tags is the number of tags now; Manifests three times as many.
func (s *scaleSource) Tags() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := s.repos * s.tagsPerRepo
	for _, a := range s.added {
		n += a
	}
	return n
}

func scaleRepoName(r int) string { return fmt.Sprintf("bench/r%05d", r) }
func scaleTagName(t int) string  { return fmt.Sprintf("t%06d", t) }

// scaleMoved is one tag a promotion moved or added, with the digest it now names.
type scaleMoved struct {
	Repo, Tag string
	Digest    string
	Added     bool
}

// Promote moves k tags to new content and adds k/5 of them as new tags instead (10: 8
// moved, 2 added), deterministically: the same promotions in the same order give the same
// tags and digests.
func (s *scaleSource) Promote(k int) []scaleMoved {
	s.mu.Lock()
	s.promoted++
	p := uint64(s.promoted)
	var out []scaleMoved
	type pick struct{ r, t int }
	var picks []pick
	seen := map[uint64]bool{}
	for i := uint64(0); len(picks) < k-k/5; i++ {
		h := scaleMix(p<<32 | i)
		r := int(h % uint64(s.repos))
		t := int((h >> 32) % uint64(s.tagsPerRepo))
		key := uint64(r)<<32 | uint64(t)
		if seen[key] {
			continue
		}
		seen[key] = true
		s.version[key]++
		picks = append(picks, pick{r, t})
	}
	var adds []pick
	for i := range k / 5 {
		r := int(scaleMix(p<<32|1<<31|uint64(i)) % uint64(s.repos))
		adds = append(adds, pick{r, s.tagsPerRepo + s.added[r]})
		s.added[r]++
	}
	s.mu.Unlock()
	for _, pk := range picks {
		out = append(out, scaleMoved{Repo: scaleRepoName(pk.r), Tag: scaleTagName(pk.t), Digest: s.TagDigest(pk.r, pk.t)})
	}
	for _, pk := range adds {
		out = append(out, scaleMoved{Repo: scaleRepoName(pk.r), Tag: scaleTagName(pk.t), Digest: s.TagDigest(pk.r, pk.t), Added: true})
	}
	return out
}

// scaleMix is splitmix64's finaliser: a deterministic spread of promotion picks.
func scaleMix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// TagDigest is the digest of the index tag t of repository r names now.
func (s *scaleSource) TagDigest(r, t int) string {
	s.mu.RLock()
	v := s.version[uint64(r)<<32|uint64(t)]
	s.mu.RUnlock()
	d, _ := s.tagHead(r, t, v)
	return d
}

// tagHead returns the digest and size of tag t of repository r at version v, remembered
// (40 bytes a tag) so that a HEAD, the request a no-op makes of every tag, costs a lookup.
func (s *scaleSource) tagHead(r, t int, v uint32) (string, int) {
	key := uint64(r)<<32 | uint64(t)
	s.mu.RLock()
	h, ok := s.heads[key]
	s.mu.RUnlock()
	if !ok || h.ver != v {
		index := s.build(uint32(r), uint32(t), v).index
		h = scaleHead{ver: v, size: uint32(len(index)), sum: scaleSum(index)}
		s.mu.Lock()
		s.heads[key] = h
		s.mu.Unlock()
	}
	return "sha256:" + hex.EncodeToString(h.sum[:]), int(h.size)
}

// Counts returns the requests of each kind since the last Reset.
func (s *scaleSource) Counts() map[string]int64 {
	m := map[string]int64{}
	for i := range s.counts {
		if n := s.counts[i].Load(); n > 0 {
			m[scaleKindNames[i]] = n
		}
	}
	return m
}

// Total is the number of requests since the last Reset.
func (s *scaleSource) Total() int64 {
	var n int64
	for i := range s.counts {
		n += s.counts[i].Load()
	}
	return n
}

// Reset sets the counters to zero.
func (s *scaleSource) Reset() {
	for i := range s.counts {
		s.counts[i].Store(0)
	}
}

func (s *scaleSource) String() string {
	var parts []string
	for i, name := range scaleKindNames {
		if n := s.counts[i].Load(); n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", name, n))
		}
	}
	return strings.Join(parts, ", ")
}

func scaleSum(b []byte) [32]byte { return sha256.Sum256(b) }

func scaleDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// scaleTar is an uncompressed tar of one 512-byte file whose text names what it is.
func scaleTar(what string) []byte {
	data := []byte(what + "\n")
	data = append(data, bytes.Repeat([]byte{'.'}, 512-len(data)%512)...)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "bench", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR})
	_, _ = tw.Write(data)
	_ = tw.Close()
	return buf.Bytes()
}

// layer returns the bytes of a shared or unique layer.
func (s *scaleSource) layer(b scaleBlob) []byte {
	switch b.kind {
	case scaleLayerShared:
		b.repo, b.tag, b.ver = 0, 0, 0
	case scaleLayerRepo:
		b.tag, b.ver = 0, 0
	case scaleLayerUnique:
		return scaleTar(fmt.Sprintf("unique layer of %s:%s version %d, %s", scaleRepoName(int(b.repo)), scaleTagName(int(b.tag)), b.ver, scaleArchs[b.arch]))
	}
	if v, ok := s.shared.Load(b); ok {
		return v.([]byte)
	}
	var data []byte
	if b.kind == scaleLayerShared {
		data = scaleTar("layer shared by every " + scaleArchs[b.arch] + " image")
	} else {
		data = scaleTar(fmt.Sprintf("layer shared by the %s images of %s", scaleArchs[b.arch], scaleRepoName(int(b.repo))))
	}
	s.shared.Store(b, data)
	return data
}

// scaleTagContent is every manifest and config of one tag's version.
type scaleTagContent struct {
	index   []byte
	images  [2][]byte
	configs [2][]byte
}

type scaleDesc struct {
	MediaType string            `json:"mediaType"`
	Digest    string            `json:"digest"`
	Size      int               `json:"size"`
	Platform  map[string]string `json:"platform,omitempty"`
}

// build computes one tag's content and records where each of its digests comes from.
func (s *scaleSource) build(r, t, v uint32) scaleTagContent {
	c, entries := s.tagContent(r, t, v)
	s.mu.Lock()
	for _, e := range entries {
		s.byDigest[e[0].([32]byte)] = e[1].(scaleBlob)
	}
	s.mu.Unlock()
	return c
}

// tagContent computes one tag's content, and where each of its digests comes from (sha256,
// scaleBlob), without recording it.
func (s *scaleSource) tagContent(r, t, v uint32) (c scaleTagContent, entries [][2]any) {
	var imageDescs []scaleDesc
	for a := range uint8(2) {
		var layers []scaleDesc
		var diffs []string
		for _, kind := range []uint8{scaleLayerShared, scaleLayerRepo, scaleLayerUnique} {
			b := scaleBlob{kind: kind, arch: a, repo: r, tag: t, ver: v}
			data := s.layer(b)
			d := scaleDigest(data)
			layers = append(layers, scaleDesc{MediaType: scaleMediaLayer, Digest: d, Size: len(data)})
			diffs = append(diffs, d)
			entries = append(entries, [2]any{scaleSum(data), b})
		}
		cfg, _ := json.Marshal(map[string]any{
			"architecture": scaleArchs[a], "os": "linux",
			"config": map[string]any{"Labels": map[string]string{"bench.tag": fmt.Sprintf("%s:%s", scaleRepoName(int(r)), scaleTagName(int(t))), "bench.version": strconv.Itoa(int(v))}},
			"rootfs": map[string]any{"type": "layers", "diff_ids": diffs},
		})
		c.configs[a] = cfg
		entries = append(entries, [2]any{scaleSum(cfg), scaleBlob{kind: scaleConfig, arch: a, repo: r, tag: t, ver: v}})
		img, _ := json.Marshal(map[string]any{
			"schemaVersion": 2, "mediaType": scaleMediaImage,
			"config": scaleDesc{MediaType: scaleMediaConfig, Digest: scaleDigest(cfg), Size: len(cfg)},
			"layers": layers,
		})
		c.images[a] = img
		entries = append(entries, [2]any{scaleSum(img), scaleBlob{kind: scaleImage, arch: a, repo: r, tag: t, ver: v}})
		imageDescs = append(imageDescs, scaleDesc{MediaType: scaleMediaImage, Digest: scaleDigest(img), Size: len(img),
			Platform: map[string]string{"architecture": scaleArchs[a], "os": "linux"}})
	}
	c.index, _ = json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": scaleMediaIndex, "manifests": imageDescs})
	entries = append(entries, [2]any{scaleSum(c.index), scaleBlob{kind: scaleIndex, repo: r, tag: t, ver: v}})
	return c, entries
}

// content returns the bytes and media type of a digest built before.
func (s *scaleSource) content(b scaleBlob) ([]byte, string) {
	switch b.kind {
	case scaleLayerShared, scaleLayerRepo, scaleLayerUnique:
		return s.layer(b), scaleMediaLayer
	}
	c := s.build(b.repo, b.tag, b.ver)
	switch b.kind {
	case scaleIndex:
		return c.index, scaleMediaIndex
	case scaleImage:
		return c.images[b.arch], scaleMediaImage
	default:
		return c.configs[b.arch], scaleMediaConfig
	}
}

// lookupRepo parses "bench/rNNNNN" into its number.
func (s *scaleSource) lookupRepo(name string) (int, bool) {
	n, ok := strings.CutPrefix(name, "bench/r")
	if !ok || len(n) != 5 {
		return 0, false
	}
	r, err := strconv.Atoi(n)
	return r, err == nil && r >= 0 && r < s.repos
}

// lookupTag parses "tNNNNNN" into its number, if repository r has that tag now, and returns
// its version.
func (s *scaleSource) lookupTag(r int, name string) (int, uint32, bool) {
	n, ok := strings.CutPrefix(name, "t")
	if !ok || len(n) != 6 {
		return 0, 0, false
	}
	t, err := strconv.Atoi(n)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err != nil || t < 0 || t >= s.tagsPerRepo+s.added[r] {
		return 0, 0, false
	}
	return t, s.version[uint64(r)<<32|uint64(t)], true
}

func (s *scaleSource) lookupDigest(d string) (scaleBlob, bool) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 {
		return scaleBlob{}, false
	}
	var key [32]byte
	if _, err := hex.Decode(key[:], []byte(h)); err != nil {
		return scaleBlob{}, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.byDigest[key]
	return b, ok
}

func scaleError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

// page answers one page of a sorted list of names, with n and last as docker-distribution
// takes them (n at most 1000; without n, 100 for the catalog and every tag for a tag list).
func scalePage(w http.ResponseWriter, r *http.Request, names []string, defaultN int, body func([]string) any) {
	q := r.URL.Query()
	n := defaultN
	if v := q.Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			scaleError(w, http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", "bad n")
			return
		}
		n = min(n, 1000)
	}
	start := 0
	if last := q.Get("last"); last != "" {
		start = sort.SearchStrings(names, last)
		if start < len(names) && names[start] == last {
			start++
		}
	}
	end := min(start+n, len(names))
	if end < len(names) && n > 0 {
		next := url.Values{"n": {strconv.Itoa(n)}, "last": {names[end-1]}}
		w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, r.URL.Path, next.Encode()))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body(names[start:end]))
}

func (s *scaleSource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := strings.CutPrefix(r.URL.Path, "/v2/")
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		s.counts[scaleOther].Add(1)
		scaleError(w, http.StatusNotFound, "NOT_FOUND", "not found")
		return
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if p == "" {
		s.counts[scaleOther].Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	if p == "_catalog" {
		s.counts[scaleCatalog].Add(1)
		names := make([]string, s.repos)
		for i := range names {
			names[i] = scaleRepoName(i)
		}
		scalePage(w, r, names, 100, func(page []string) any { return map[string]any{"repositories": page} })
		return
	}
	for _, sep := range []string{"/tags/list", "/manifests/", "/blobs/", "/referrers/"} {
		i := strings.LastIndex(p, sep)
		if i < 0 {
			continue
		}
		name, ref := p[:i], p[i+len(sep):]
		repo, ok := s.lookupRepo(name)
		switch sep {
		case "/tags/list":
			s.counts[scaleTags].Add(1)
			if !ok || ref != "" {
				scaleError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
				return
			}
			s.mu.RLock()
			n := s.tagsPerRepo + s.added[repo]
			s.mu.RUnlock()
			tags := make([]string, n)
			for t := range tags {
				tags[t] = scaleTagName(t)
			}
			scalePage(w, r, tags, len(tags), func(page []string) any { return map[string]any{"name": name, "tags": page} })
		case "/referrers/":
			s.counts[scaleReferrers].Add(1)
			scaleError(w, http.StatusNotFound, "NOT_FOUND", "no referrers API")
		case "/manifests/":
			if r.Method == http.MethodHead {
				s.counts[scaleHeadManifest].Add(1)
			} else {
				s.counts[scaleGetManifest].Add(1)
			}
			if !ok {
				scaleError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
				return
			}
			if strings.HasPrefix(ref, "sha256:") {
				b, found := s.lookupDigest(ref)
				if !found || b.kind > scaleImage {
					scaleError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
					return
				}
				data, mt := s.content(b)
				s.write(w, r, data, mt, ref)
				return
			}
			t, v, found := s.lookupTag(repo, ref)
			if !found {
				scaleError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
				return
			}
			if r.Method == http.MethodHead {
				d, size := s.tagHead(repo, t, v)
				scaleHeaders(w, scaleMediaIndex, d, size)
				return
			}
			data := s.build(uint32(repo), uint32(t), v).index
			s.write(w, r, data, scaleMediaIndex, scaleDigest(data))
		case "/blobs/":
			if r.Method == http.MethodHead {
				s.counts[scaleHeadBlob].Add(1)
			} else {
				s.counts[scaleGetBlob].Add(1)
			}
			b, found := s.lookupDigest(ref)
			if !ok || !found || b.kind == scaleIndex || b.kind == scaleImage {
				scaleError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown")
				return
			}
			data, _ := s.content(b)
			s.write(w, r, data, "application/octet-stream", ref)
		}
		return
	}
	s.counts[scaleOther].Add(1)
	scaleError(w, http.StatusNotFound, "NOT_FOUND", "not found")
}

func scaleHeaders(w http.ResponseWriter, mt, digest string, size int) {
	w.Header().Set("Content-Type", mt)
	w.Header().Set("Docker-Content-Digest", digest)
	w.Header().Set("Content-Length", strconv.Itoa(size))
}

func (s *scaleSource) write(w http.ResponseWriter, r *http.Request, data []byte, mt, digest string) {
	scaleHeaders(w, mt, digest, len(data))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(data)
}

// TestScaleSource checks the scale benchmark's synthetic source so that it cannot rot: crane
// pulls a tag from it, the catalog pages, regmirror generates a tree from it and serves every
// tag at the source's digest, and a promotion moves and adds tags deterministically.
func TestScaleSource(t *testing.T) {
	needPeers(t)
	src := newScaleSource(t, 3, 4)
	ep := peers.Endpoint{Host: strings.TrimPrefix(src.URL, "http://")}
	crane := peers.NewCrane(t)

	// crane pulls a whole two-arch index from the source and checks every digest.
	want := src.TagDigest(1, 2)
	crane.Pull(t, ep, "bench/r00001:t000002", want)
	if got := src.Counts()["GET blob"]; got != 8 { // 2 configs, 2 shared, 2 per-repository, 2 unique layers
		t.Errorf("crane pull: source blob GETs: got %d, want 8 (%s)", got, src)
	}

	// The catalog pages with Link headers.
	var repos []string
	next := src.URL + "/v2/_catalog?n=2"
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatalf("catalog: more than 3 pages of 2 for 3 repositories")
		}
		resp, err := http.Get(next)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Repositories []string }
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		repos = append(repos, body.Repositories...)
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			next = src.URL + strings.TrimSuffix(strings.TrimPrefix(strings.Split(l, ";")[0], "<"), ">")
		}
	}
	if got, want := strings.Join(repos, " "), "bench/r00000 bench/r00001 bench/r00002"; got != want {
		t.Errorf("catalog in pages of 2: got %q, want %q", got, want)
	}

	// regmirror generate, then serve: every tag answers the source's digest.
	tree := t.TempDir()
	src.Reset()
	generate(t, src.URL, tree)
	if got, want := src.Counts()["GET blob"], int64(2+2*3+2*2*12); got != want { // shared, per repository and arch, config and unique per image
		t.Errorf("generate: source blob GETs: got %d, want %d (%s)", got, want, src)
	}
	port := peers.FreePort(t)
	serve := peers.Endpoint{Host: "localhost:" + strconv.Itoa(port)}
	peers.Start(t, "regmirror-serve", scaleServeCmd(peers.Regmirror(t), tree, port), wrkBenchReady(serve.URL()+"/v2/"))
	check := func(when string) map[string]string {
		t.Helper()
		digests := map[string]string{}
		for r := range 3 {
			for tg := range src.tagCount(r) {
				name := scaleRepoName(r) + ":" + scaleTagName(tg)
				got, want := scaleHeadTag(t, serve.URL(), scaleRepoName(r), scaleTagName(tg)), src.TagDigest(r, tg)
				if got != want {
					t.Errorf("%s: serve %s: got %s, want %s", when, name, got, want)
				}
				digests[name] = want
			}
		}
		return digests
	}
	before := check("first generation")

	// A promotion moves 8 tags and adds 2, the same ones each time.
	moved := src.Promote(10)
	again := newScaleSource(t, 3, 4).Promote(10)
	if fmt.Sprint(moved) != fmt.Sprint(again) {
		t.Errorf("promotion: got %v, then %v from a fresh source, want the same", moved, again)
	}
	var added int
	for _, m := range moved {
		if m.Added {
			added++
		}
	}
	if len(moved) != 10 || added != 2 || src.Tags() != 14 {
		t.Fatalf("promotion of 10: got %d tags (%d added), %d tags in all, want 10 (2 added), 14", len(moved), added, src.Tags())
	}
	for _, m := range moved {
		old, had := before[m.Repo+":"+m.Tag]
		if had == m.Added || old == m.Digest {
			t.Errorf("promotion: %s:%s (added %v) named %q before, %s after, want a tag moved to new content or a new tag", m.Repo, m.Tag, m.Added, old, m.Digest)
		}
	}
	generate(t, src.URL, tree)
	deadline := time.Now().Add(30 * time.Second)
	for scaleHeadTag(t, serve.URL(), moved[0].Repo, moved[0].Tag) != moved[0].Digest && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	check("after the promotion")
	crane.Pull(t, serve, moved[len(moved)-1].Repo+":"+moved[len(moved)-1].Tag, moved[len(moved)-1].Digest)
}

// scaleHeadTag is the Docker-Content-Digest a HEAD of repo:tag answers at base ("" unless
// 200).
func scaleHeadTag(t testing.TB, base, repo, tag string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodHead, base+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", scaleMediaIndex+", "+scaleMediaImage)
	resp, err := scaleClient.Do(req)
	if err != nil {
		return ""
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return resp.Header.Get("Docker-Content-Digest")
}

var scaleClient = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// TestScaleFloor checks the scale benchmarks' floor: in this process, pipelined and in a
// process of its own, it makes one manifest HEAD per tag, and it fails when it lists fewer tags than wanted.
func TestScaleFloor(t *testing.T) {
	src := newScaleSource(t, 3, 4)
	for _, tc := range []struct {
		name  string
		floor func() error
	}{
		{"in process", func() error { _, err := floorRun(src.URL, src.Tags(), 4, false); return err }},
		{"pipelined", func() error { _, err := floorRun(src.URL, src.Tags(), 4, true); return err }},
		{"own process", func() error { scaleFloorProcess(t, src, 4); return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src.Reset()
			if err := tc.floor(); err != nil {
				t.Fatal(err)
			}
			if got, want := src.Counts()["HEAD manifest"], int64(src.Tags()); got != want {
				t.Errorf("manifest HEADs: got %d, want %d (%s)", got, want, src)
			}
		})
	}
	if _, err := floorRun(src.URL, src.Tags()+1, 4, false); err == nil || !strings.Contains(err.Error(), "tags listed") {
		t.Errorf("floor wanting one tag more than the source has: got %v, want a refusal naming the tags listed", err)
	}
	var stderr strings.Builder
	if got, want := floorChild("no spec", &stderr), 2; got != want || !strings.Contains(stderr.String(), floorChildEnv) {
		t.Errorf("floorChild of a malformed spec: got exit code %d and %q, want %d and an error naming %s", got, stderr.String(), want, floorChildEnv)
	}
}
