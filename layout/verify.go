package layout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// maxVerifyManifest bounds a manifest read back from blobs/ while walking index.json.
const maxVerifyManifest = MaxManifestSize

// Verify checks that the tree is whole: everything reachable from index.json (manifests,
// configs, layers, recursively) and everything the current generation's metadata lists
// (manifests with their bytes, referrers, blobs with their sizes) is present in blobs/ and
// hashes to its digest. Foreign layers (descriptors with urls, or non-distributable media types) may be
// absent. It returns ErrNoGeneration for a tree without a generation, and otherwise every
// problem found, joined.
func (t *Tree) Verify(ctx context.Context) error {
	m, _, err := t.Load()
	if err != nil {
		return err
	}
	v := &verifier{t: t, ctx: ctx, checked: map[Digest]error{}}

	if b, err := os.ReadFile(t.Path(OCILayoutFile)); err != nil {
		v.problem(fmt.Errorf("oci-layout: %w", err))
	} else {
		var l struct {
			Version string `json:"imageLayoutVersion"`
		}
		if json.Unmarshal(b, &l) != nil || l.Version == "" {
			v.problem(fmt.Errorf("oci-layout: not an OCI layout file"))
		}
	}

	// The metadata.
	for d, mf := range m.Manifests {
		if err := VerifyBytes(d, mf.Data); err != nil {
			v.problem(fmt.Errorf("metadata: manifest %s: %w", d, err))
		}
		if _, ok := m.Blobs[d]; !ok {
			v.problem(fmt.Errorf("metadata: manifest %s is not listed among the blobs", d))
		}
	}
	for name, r := range m.Repositories {
		for tag, d := range r.Tags {
			if _, ok := m.Manifests[d]; !ok {
				v.problem(fmt.Errorf("metadata: %s:%s points at %s, which is not among the manifests", name, tag, d))
			}
		}
		for _, d := range r.Manifests {
			if _, ok := m.Manifests[d]; !ok {
				v.problem(fmt.Errorf("metadata: repository %s lists manifest %s, which is not among the manifests", name, d))
			}
		}
		for _, d := range r.Blobs {
			if _, ok := m.Blobs[d]; !ok {
				v.problem(fmt.Errorf("metadata: repository %s lists blob %s, which is not among the blobs", name, d))
			}
		}
		for _, d := range r.Retiring {
			if _, ok := m.Manifests[d]; !ok {
				v.problem(fmt.Errorf("metadata: repository %s retires manifest %s, which is not among the manifests", name, d))
			}
		}
		for _, d := range r.RetiringBlobs {
			if b, ok := m.Blobs[d]; !ok || b.Retired.IsZero() {
				v.problem(fmt.Errorf("metadata: repository %s retires blob %s, which is not among the blobs with a retired time", name, d))
			}
		}
		for subject, descs := range r.Referrers {
			for _, desc := range descs {
				d := desc.Digest
				if _, ok := m.Manifests[d]; !ok {
					v.problem(fmt.Errorf("metadata: repository %s: referrer %s of %s is not among the manifests", name, d, subject))
				}
			}
		}
	}
	for d, b := range m.Blobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		v.blob(d, b.Size)
	}

	// index.json and everything reachable from it.
	raw, err := os.ReadFile(t.Path(IndexFile))
	if err != nil {
		v.problem(fmt.Errorf("index.json: %w", err))
	} else {
		var idx struct {
			Manifests []verifyDescriptor `json:"manifests"`
		}
		if err := json.Unmarshal(raw, &idx); err != nil {
			v.problem(fmt.Errorf("index.json: %w", err))
		}
		for _, desc := range idx.Manifests {
			if err := ctx.Err(); err != nil {
				return err
			}
			v.manifest(desc, "index.json", 0)
		}
	}
	return errors.Join(v.problems...)
}

type verifyDescriptor struct {
	MediaType string   `json:"mediaType"`
	Digest    string   `json:"digest"`
	Size      int64    `json:"size"`
	URLs      []string `json:"urls"`
}

type verifier struct {
	t        *Tree
	ctx      context.Context
	checked  map[Digest]error
	walked   map[Digest]bool
	problems []error
}

func (v *verifier) problem(err error) { v.problems = append(v.problems, err) }

// blob checks one blob file once; problems are reported once.
func (v *verifier) blob(d Digest, size int64) error {
	if err, ok := v.checked[d]; ok {
		return err
	}
	err := v.hash(d, size)
	v.checked[d] = err
	if err != nil {
		v.problem(err)
	}
	return err
}

func (v *verifier) hash(d Digest, size int64) error {
	if err := v.t.VerifyBlob(d, size); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	return nil
}

// manifest checks a manifest reachable from index.json and what it references.
func (v *verifier) manifest(desc verifyDescriptor, from string, depth int) {
	d, err := ParseDigest(desc.Digest)
	if err != nil {
		v.problem(fmt.Errorf("%s: %w", from, err))
		return
	}
	if v.walked == nil {
		v.walked = map[Digest]bool{}
	}
	if v.walked[d] {
		return
	}
	v.walked[d] = true
	if depth > 16 {
		v.problem(fmt.Errorf("%s: manifests nested too deep at %s", from, d))
		return
	}
	if desc.Size > maxVerifyManifest {
		v.problem(fmt.Errorf("%s: manifest %s is %d bytes, over the limit", from, d, desc.Size))
		return
	}
	if v.blob(d, desc.Size) != nil {
		return
	}
	data, err := os.ReadFile(v.t.Path(BlobPath(d)))
	if err != nil {
		v.problem(fmt.Errorf("manifest %s: %w", d, err))
		return
	}
	var m struct {
		Config    *verifyDescriptor  `json:"config"`
		Layers    []verifyDescriptor `json:"layers"`
		Blobs     []verifyDescriptor `json:"blobs"`
		Manifests []verifyDescriptor `json:"manifests"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		v.problem(fmt.Errorf("manifest %s: %w", d, err))
		return
	}
	here := "manifest " + d.String()
	for _, c := range m.Manifests {
		v.manifest(c, here, depth+1)
	}
	check := func(b verifyDescriptor, foreignOK bool) {
		bd, err := ParseDigest(b.Digest)
		if err != nil {
			v.problem(fmt.Errorf("%s: %w", here, err))
			return
		}
		if foreignOK && IsForeignLayer(b.MediaType, b.URLs) {
			if _, err := os.Stat(v.t.Path(BlobPath(bd))); err != nil {
				return // a foreign layer the source did not hold
			}
		}
		v.blob(bd, b.Size)
	}
	if m.Config != nil {
		check(*m.Config, false)
	}
	for _, l := range append(m.Layers, m.Blobs...) {
		check(l, true)
	}
}
