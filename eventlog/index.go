package eventlog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/whocould/whocould/event"
)

// keyIndex is the dedup-for-ever index: a file of 16-byte keys, record i (from 0) holding the key
// of position i+1 (all zero for a position without a key: a deleted message or one appended by
// another client without a Nats-Msg-Id), and the same in memory as a map from key to its first
// position. The file is a cache of the stream: it is only appended to in position order after the
// stream acknowledged, so it may lag the stream (crash between the two), which catch-up repairs
// by reading the stream; it is never fsynced, and after an unclean reboot (boot marker) it is
// rebuilt from the stream.
type keyIndex struct {
	path   string
	f      *os.File
	lock   *os.File
	marker string
	n      uint64 // records in the file: positions 1..n are covered
	keys   map[event.Key]uint64
	// unclean is true when the previous writer did not close cleanly during an earlier boot of
	// this machine: unsynced file contents may have been lost, so the file must be rebuilt.
	unclean bool
}

const keySize = len(event.Key{})

// openKeyIndex takes the writer lock for stream in dir and loads its index.
func openKeyIndex(dir, stream string) (*keyIndex, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(dir, "eventlog-"+stream)
	lock, err := os.OpenFile(base+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, base+".lock")
		}
		return nil, fmt.Errorf("lock %s: %w", base+".lock", err)
	}
	x := &keyIndex{path: base + ".keys", lock: lock, marker: base + ".open"}
	fail := func(err error) (*keyIndex, error) {
		x.close(false)
		return nil, err
	}

	// Boot marker: present while a writer has the log open, holding the boot id. A marker from an
	// earlier boot means the machine went down with the log open.
	boot := bootID()
	if prev, err := os.ReadFile(x.marker); err == nil && string(prev) != boot {
		x.unclean = true
	}
	if err := os.WriteFile(x.marker, []byte(boot), 0o644); err != nil {
		return fail(err)
	}

	x.f, err = os.OpenFile(x.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fail(err)
	}
	if x.unclean {
		if err := x.truncate(0); err != nil {
			return fail(err)
		}
		return x, nil
	}
	fi, err := x.f.Stat()
	if err != nil {
		return fail(err)
	}
	// Drops a torn last record, and builds the map.
	if err := x.truncate(uint64(fi.Size()) / uint64(keySize)); err != nil {
		return fail(err)
	}
	return x, nil
}

// add writes the keys of positions n+1, n+2, ... (zero keys for positions without one) and adds
// them to the map.
func (x *keyIndex) add(keys []event.Key) error {
	if len(keys) == 0 {
		return nil
	}
	buf := make([]byte, 0, len(keys)*keySize)
	for _, k := range keys {
		buf = append(buf, k[:]...)
	}
	if _, err := x.f.WriteAt(buf, int64(x.n)*int64(keySize)); err != nil {
		return fmt.Errorf("write %s: %w", x.path, err)
	}
	for i, k := range keys {
		if k == (event.Key{}) {
			continue
		}
		if _, ok := x.keys[k]; !ok {
			x.keys[k] = x.n + uint64(i) + 1
		}
	}
	x.n += uint64(len(keys))
	return nil
}

// record returns the key stored for position p (1 <= p <= n).
func (x *keyIndex) record(p uint64) (event.Key, error) {
	var k event.Key
	if _, err := x.f.ReadAt(k[:], int64(p-1)*int64(keySize)); err != nil {
		return k, fmt.Errorf("read %s: %w", x.path, err)
	}
	return k, nil
}

// truncate keeps the records of positions 1..n and rebuilds the map from them.
func (x *keyIndex) truncate(n uint64) error {
	if err := x.f.Truncate(int64(n) * int64(keySize)); err != nil {
		return fmt.Errorf("truncate %s: %w", x.path, err)
	}
	data := make([]byte, int(n)*keySize)
	if _, err := x.f.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %w", x.path, err)
	}
	x.keys = make(map[event.Key]uint64, n)
	for i := range int(n) {
		k := event.Key(data[i*keySize : (i+1)*keySize])
		if _, ok := x.keys[k]; !ok && k != (event.Key{}) {
			x.keys[k] = uint64(i + 1)
		}
	}
	x.n = n
	return nil
}

// close closes the files and releases the lock; clean removes the boot marker.
func (x *keyIndex) close(clean bool) error {
	var errs []error
	if x.f != nil {
		errs = append(errs, x.f.Close())
		x.f = nil
	}
	if clean {
		if err := os.Remove(x.marker); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if x.lock != nil {
		errs = append(errs, x.lock.Close()) // closing the descriptor releases the flock
		x.lock = nil
	}
	return errors.Join(errs...)
}

// bootID identifies the current boot of the machine (Linux); "" where unknown.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(bytes.TrimSpace(b)))
}
