// Package filelist writes the fullfiletimelist-<module> file that quick-fedora-mirror reads,
// so mirrors of the Fedora network sync the tree by fetching only what changed instead of
// having rsync walk every file.
//
// The format, as Fedora's create-filelist writes it and quick-fedora-mirror (and other
// readers) parse it, tab-separated, one section after another:
//
//	[Version]
//	2
//
//	[Files]
//	<timestamp>	<type>	<size>	<path>
//	…
//
//	[Checksums SHA1]
//	<sha1 hex>	<path>
//	…
//
//	[End]
//
// timestamp is the newer of the file's mtime and ctime in seconds since the epoch; type is
// "f" (file), "d" (directory) or "l" (symbolic link); size is st_size; path is relative to the
// module's top directory (the tree root), without a leading "./". A client transfers the
// entries whose timestamp is newer than its last run and deletes what the list no longer
// names. The checksummed files are those whose name and size may stay the same while their
// content changes: the generation stamp and index.json (Fedora lists repomd.xml files).
package filelist

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/regmirror/regmirror/layout"
)

// Version is the file list format version written.
const Version = 2

// DefaultModule is the module name used when none is given: the file is
// "fullfiletimelist-containers" at the tree root.
const DefaultModule = "containers"

// Prefix starts the name of every file list; such files are not listed (as create-filelist -s).
const Prefix = "fullfiletimelist-"

// ListenStateFile is the state file `regmirror listen` keeps in the tree by default; it is
// not part of the published content and is not listed.
const ListenStateFile = layout.MetaDir + "/listen-state.json"

// Checksummed are the files listed in [Checksums SHA1].
var Checksummed = []string{layout.IndexFile, layout.CurrentFile}

// Entry is one line of [Files].
type Entry struct {
	Time int64
	Type string // "f", "d", "l"
	Size int64
	Path string
}

// Name is the file list's name for module.
func Name(module string) string {
	if module == "" {
		module = DefaultModule
	}
	return Prefix + module
}

// Write writes the file list of the tree as it is on disk to TREE/fullfiletimelist-<module>,
// atomically, and leaves an identical file alone. Call it after layout.Tree.Publish: meta is
// the generation just published, and Write refuses a tree whose stamp names another one (a
// list written before the stamp would list the previous stamp and miss the new metadata).
func Write(tree *layout.Tree, meta *layout.Meta, module string) error {
	if strings.ContainsAny(module, "/\\ \t\n") || strings.HasPrefix(module, ".") {
		return fmt.Errorf("file list module %q: want a plain name such as %q", module, DefaultModule)
	}
	if meta != nil {
		s, err := tree.ReadStamp()
		if err != nil {
			return fmt.Errorf("writing the file list: %w", err)
		}
		if s.Generation != meta.Generation {
			return fmt.Errorf("writing the file list: the tree's stamp says generation %d, not %d: write the list after publishing", s.Generation, meta.Generation)
		}
	}
	data, err := Render(tree.Dir())
	if err != nil {
		return err
	}
	p := tree.Path(Name(module))
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := layout.WriteFile(p, data); err != nil {
		return fmt.Errorf("writing the file list: %w", err)
	}
	return nil
}

// Render returns the file list of the directory tree at root.
func Render(root string) ([]byte, error) {
	entries, err := Scan(root)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "[Version]\n%d\n\n[Files]\n", Version)
	for _, e := range entries {
		fmt.Fprintf(&b, "%d\t%s\t%d\t%s\n", e.Time, e.Type, e.Size, e.Path)
	}
	b.WriteString("\n[Checksums SHA1]\n")
	for _, rel := range Checksummed {
		f, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing the tree: %w", err)
		}
		sum := sha1.Sum(f)
		fmt.Fprintf(&b, "%s\t%s\n", hex.EncodeToString(sum[:]), rel)
	}
	b.WriteString("\n[End]\n")
	return b.Bytes(), nil
}

// Scan lists every file, directory and link below root (root itself, file lists, temporary
// files and the listener's state file excepted), sorted by path.
func Scan(root string) ([]Entry, error) {
	var entries []Entry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != root {
				return nil // removed while listing (a pruned orphan)
			}
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		name := d.Name()
		if strings.HasPrefix(name, layout.TempPrefix) || rel == ListenStateFile || (!strings.Contains(rel, "/") && strings.HasPrefix(name, Prefix)) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if strings.ContainsAny(rel, "\t\n") {
			return fmt.Errorf("listing the tree: %q has a tab or newline in its name, which the file list format cannot hold", rel)
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		e := Entry{Time: changed(fi), Size: fi.Size(), Path: rel}
		switch {
		case fi.Mode().IsRegular():
			e.Type = "f"
		case fi.IsDir():
			e.Type = "d"
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type = "l"
		default:
			return nil // sockets, fifos: nothing a mirror copies
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the tree: %w", err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	return entries, nil
}
