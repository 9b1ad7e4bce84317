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

	// PubDir holds the publications: one immutable directory per publish (each generate and
	// each crawl), PubPath(name), with everything that changes when the generation switches.
	PubDir = MetaDir + "/pub"
	// LiveLink is the symbolic link to the live publication, "pub/<name>"; replacing it (by
	// rename) is the last write of a publish, and switches everything at once.
	LiveLink = MetaDir + "/live"
	// Files of a publication, relative to its directory.
	PubStamp = "current"    // the stamp, read as CurrentFile
	PubIndex = "index.json" // the OCI index, read as IndexFile
	// CurrentLinkTarget is what the constant link CurrentFile points at, relative to MetaDir.
	CurrentLinkTarget = "live/" + PubStamp

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

// PubPath is the path of the publication directory called name, "regmirror/pub/<name>".
func PubPath(name string) string {
	return path.Join(PubDir, name)
}

// LiveTarget is the target of LiveLink when name is live, relative to MetaDir: "pub/<name>".
func LiveTarget(name string) string {
	return "pub/" + name
}

// RootLinkTarget is the target of the constant link at the tree root called name (index.json,
// the file list): the same name in the live publication, "regmirror/live/<name>".
func RootLinkTarget(name string) string {
	return path.Join(LiveLink, name)
}
