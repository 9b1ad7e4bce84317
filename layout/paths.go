package layout

import "path"

// Fixed paths, relative to the tree root, in slash form.
const (
	OCILayoutFile = "oci-layout"
	IndexFile     = "index.json"
	BlobsDir      = "blobs"
	MetaDir       = "regmirror"
	CurrentFile   = MetaDir + "/current"
	MetaFilesDir  = MetaDir + "/meta"

	// TempPrefix starts the name of every file being written. Such files are never part of a
	// generation: rsync excludes them and the generator removes stale ones.
	TempPrefix = ".tmp-"

	// OCILayoutContent is the content of the oci-layout file.
	OCILayoutContent = `{"imageLayoutVersion":"1.0.0"}`
)

// BlobPath is the path of a blob relative to the tree root, "blobs/<algorithm>/<hex>".
// It is also the path below a mirror's URL.
func BlobPath(d Digest) string {
	return path.Join(BlobsDir, d.Algorithm(), d.Hex())
}

// BlobDir is the directory holding blobs of one algorithm, "blobs/<algorithm>".
func BlobDir(algorithm string) string {
	return path.Join(BlobsDir, algorithm)
}

// MetaPath is the path, relative to the tree root, of the metadata file whose compressed
// bytes have digest d: "regmirror/meta/<hex>.json.zst".
func MetaPath(d Digest) string {
	return path.Join(MetaFilesDir, d.Hex()+".json.zst")
}

// metaRef is how the current stamp names a metadata file, relative to MetaDir.
func metaRef(d Digest) string {
	return "meta/" + d.Hex() + ".json.zst"
}
