package layout

import (
	"strings"
	"testing"
)

func TestCountryTable(t *testing.T) {
	if n := len(countryContinent); n != 250 {
		t.Errorf("table has %d codes, want 249 ISO 3166-1 codes and XK", n)
	}
	for c, k := range countryContinent {
		if len(c) != 2 || c != strings.ToUpper(c) || !IsContinent(k) {
			t.Errorf("bad entry %q: %q", c, k)
		}
	}
	for c, want := range map[string]string{"DE": "EU", "US": "NA", "BR": "SA", "JP": "AS", "AU": "OC", "ZA": "AF", "AQ": "AN", "RU": "EU", "TR": "AS", "XK": "EU"} {
		if got, ok := ContinentOf(c); !ok || got != want {
			t.Errorf("ContinentOf(%s) = %q, %v; want %q", c, got, ok, want)
		}
	}
}
