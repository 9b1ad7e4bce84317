package layout

import (
	"maps"
	"reflect"
	"unsafe"
)

// BlobsCopy is a copy of a generation's blob records for the next generation to start from
// (CopyBlobs): its map, its records copied (CarriedBlob) into one array. A Meta that keeps
// the map as its Blobs (Meta.StartBlobs) is compared with that generation's record by record,
// as the array lies, instead of a lookup by digest each: what a promotion's publish spends
// most of its diff on.
type BlobsCopy struct {
	// Blobs maps each digest of the generation's to its copy, in Records: the successor's
	// to change (records changed in place, added, removed).
	Blobs   map[Digest]*Blob
	Records []Blob
	keys    []Digest         // Records[i]'s digest, the very string of src's key
	from    []*Blob          // Records[i]'s source: src[keys[i]]
	src     map[Digest]*Blob // the generation's map, which must not change
}

// CopyBlobs copies blobs, a generation's map of records (which must not change while the
// copy is used): maps.Clone copies the map's storage wholesale, where inserts hash every key
// into a fresh map.
func CopyBlobs(blobs map[Digest]*Blob) *BlobsCopy {
	n := len(blobs)
	c := &BlobsCopy{Blobs: maps.Clone(blobs), Records: make([]Blob, 0, n), keys: make([]Digest, 0, n), from: make([]*Blob, 0, n), src: blobs}
	for d, pb := range c.Blobs {
		c.Records = append(c.Records, CarriedBlob(pb))
		c.keys = append(c.keys, d)
		c.from = append(c.from, pb)
		c.Blobs[d] = &c.Records[len(c.Records)-1]
	}
	return c
}

// StartBlobs makes c's map m's Blobs, and c what m's publish compares them with when the
// live generation's are c's source.
func (m *Meta) StartBlobs(c *BlobsCopy) {
	m.Blobs, m.blobsCopy = c.Blobs, c
}

// copiedFrom returns the source of m's blob record v under digest d, found without a
// lookup, when v is a record of m's BlobsCopy (StartBlobs) still under its own digest: the
// record the copied map holds for d (see copiedFromMap). Otherwise nil.
func (m *Meta) copiedFrom(d Digest, v *Blob) *Blob {
	c := m.blobsCopy
	if c == nil || len(c.Records) == 0 {
		return nil
	}
	size := unsafe.Sizeof(Blob{})
	off := uintptr(unsafe.Pointer(v)) - uintptr(unsafe.Pointer(&c.Records[0]))
	if off >= uintptr(len(c.Records))*size || off%size != 0 {
		return nil
	}
	i := off / size
	if c.keys[i] != d { // moved under another digest; the same string is compared by address first
		return nil
	}
	return c.from[i]
}

// copiedFromMap reports whether m's BlobsCopy was copied from blobs, which has not changed
// since: then what copiedFrom returns is blobs's record of the digest, whatever map of m
// holds the copy.
func (m *Meta) copiedFromMap(blobs map[Digest]*Blob) bool {
	c := m.blobsCopy
	return c != nil && sameMap(c.src, blobs)
}

// sameMap reports whether a and b are the same map (not equal ones).
func sameMap[K comparable, V any](a, b map[K]V) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
