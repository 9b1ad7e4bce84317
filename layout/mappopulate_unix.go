//go:build unix && !linux

package layout

// mapPopulate: only Linux maps a file's pages up front.
const mapPopulate = 0
