package geoiptest

import (
	"bytes"
	"fmt"
	"net"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// ASNDatabaseType is the metadata database_type of the ASN files written here, as MaxMind's.
const ASNDatabaseType = "GeoLite2-ASN"

// ASNNetwork places the clients of one network in an autonomous system.
type ASNNetwork struct {
	// CIDR is the network, IPv4 or IPv6.
	CIDR string
	// ASN is the autonomous system number; Org its organisation's name (optional).
	ASN uint32
	Org string
}

// ASNBytes returns a MaxMind DB in the GeoLite2-ASN schema (autonomous_system_number,
// autonomous_system_organization) holding the networks.
func ASNBytes(nets []ASNNetwork) ([]byte, error) {
	w, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            ASNDatabaseType,
		Description:             map[string]string{"en": "regmirror test ASN database"},
		IncludeReservedNetworks: true,
		RecordSize:              24,
	})
	if err != nil {
		return nil, err
	}
	for i, n := range nets {
		_, ipnet, err := net.ParseCIDR(n.CIDR)
		if err != nil {
			return nil, fmt.Errorf("network %d: %w", i, err)
		}
		org := n.Org
		if org == "" {
			org = fmt.Sprintf("AS%d test network", n.ASN)
		}
		rec := mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(n.ASN),
			"autonomous_system_organization": mmdbtype.String(org),
		}
		if err := w.Insert(ipnet, rec); err != nil {
			return nil, fmt.Errorf("network %s: %w", n.CIDR, err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteASN writes a GeoLite2-ASN MaxMind DB holding the networks to path, through a
// temporary file and a rename.
func WriteASN(path string, nets []ASNNetwork) error {
	b, err := ASNBytes(nets)
	if err == nil {
		err = writeFile(path, b)
	}
	if err != nil {
		return fmt.Errorf("writing ASN test database: %w", err)
	}
	return nil
}
