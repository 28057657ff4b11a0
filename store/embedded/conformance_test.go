package embedded_test

import (
	"testing"

	"github.com/whocould/whocould/store"
	"github.com/whocould/whocould/store/embedded"
	"github.com/whocould/whocould/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := embedded.Open(embedded.Config{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, storetest.Capabilities{})
}
