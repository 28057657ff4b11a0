package embedded_test

import (
	"sync"
	"testing"

	"github.com/whocould/whocould/store"
	"github.com/whocould/whocould/store/embedded"
	"github.com/whocould/whocould/store/storetest"
)

func TestConformance(t *testing.T) {
	var (
		mu   sync.Mutex
		dirs = map[store.Store]string{} // each store's directory, to reopen it
	)
	open := func(t *testing.T, dir string) store.Store {
		s, err := embedded.Open(embedded.Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		dirs[s] = dir
		mu.Unlock()
		return s
	}
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, t.TempDir()) }, storetest.Capabilities{
		Reopen: func(t *testing.T, closed store.Store) store.Store {
			mu.Lock()
			dir := dirs[closed]
			mu.Unlock()
			return open(t, dir)
		},
	})
}
