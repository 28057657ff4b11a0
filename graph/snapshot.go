package graph

import (
	"fmt"
	"slices"

	"github.com/whocould/whocould/internal/bin"
)

const snapshotVersion = 1

// Encode writes the graph's events (not what is derived from them: Decode derives that again)
// to w. It holds the read lock while writing.
func (g *Graph) Encode(w *bin.Writer) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	w.Uvarint(snapshotVersion)
	w.Varint(g.applied)
	w.Uvarint(g.position)
	w.Varint(g.lastRec)
	w.Uvarint(uint64(len(g.names)))
	for _, n := range g.names {
		w.String(n)
	}
	w.Uvarint(uint64(len(g.rels)))
	for i := range g.rels {
		r := &g.rels[i]
		w.Uvarint(uint64(r.kind))
		w.Uvarint(uint64(r.a))
		w.Uvarint(uint64(r.b))
		w.Uvarint(uint64(r.c))
		w.Uvarint(uint64(len(r.events)))
		for _, e := range r.events {
			putStamp(w, e.stamp)
			w.Varint(e.expires)
			w.Uvarint(uint64(e.op))
		}
	}
	ids := make([]uint32, 0, len(g.ents))
	for id, e := range g.ents {
		if e != nil && (len(e.life) > 0 || len(e.dels) > 0) {
			ids = append(ids, uint32(id))
		}
	}
	slices.Sort(ids)
	w.Uvarint(uint64(len(ids)))
	for _, id := range ids {
		e := g.ents[id]
		w.Uvarint(uint64(id))
		w.Uvarint(uint64(len(e.life)))
		for _, le := range e.life {
			putStamp(w, le.stamp)
			w.Uvarint(uint64(le.op))
			keys := make([]string, 0, len(le.attrs))
			for k := range le.attrs {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			w.Uvarint(uint64(len(keys)))
			for _, k := range keys {
				w.String(k)
				w.String(le.attrs[k])
			}
		}
		w.Uvarint(uint64(len(e.dels)))
		for _, d := range e.dels {
			putStamp(w, d)
		}
	}
}

func putStamp(w *bin.Writer, s stamp) {
	w.Varint(s.time)
	w.Uint64(s.tie)
	w.Varint(s.rec)
}

func getStamp(r *bin.Reader) stamp {
	return stamp{time: r.Varint(), tie: r.Uint64(), rec: r.Varint()}
}

// Decode reads a graph that Encode wrote and derives its intervals and statuses.
func Decode(r *bin.Reader) (*Graph, error) {
	g := New()
	if v := r.Uvarint(); r.Err == nil && v != snapshotVersion {
		return nil, fmt.Errorf("graph snapshot version %d, want %d", v, snapshotVersion)
	}
	g.applied = r.Varint()
	g.position = r.Uvarint()
	g.lastRec = r.Varint()
	n := r.Len(bin.MaxLen)
	g.names = make([]string, 0, n)
	for i := 0; i < n && r.Err == nil; i++ {
		g.intern(r.String())
	}
	nr := r.Len(bin.MaxLen)
	g.rels = make([]relation, 0, nr)
	for i := 0; i < nr && r.Err == nil; i++ {
		k := relKey{kind: relKind(r.Uvarint()), a: r.Uint32(), b: r.Uint32(), c: r.Uint32()}
		if k.kind < relMember || k.kind > relGrantAction || max(k.a, k.b, k.c) >= uint32(len(g.names)) {
			return nil, fmt.Errorf("graph snapshot: relation %d is corrupt", i)
		}
		ri := g.relation(k)
		ne := r.Len(bin.MaxLen)
		evs := make([]relEvent, ne)
		for j := range evs {
			evs[j] = relEvent{stamp: getStamp(r), expires: r.Varint(), op: op(r.Uvarint())}
			g.rels[ri].maxRec = max(g.rels[ri].maxRec, evs[j].rec)
		}
		g.rels[ri].events = evs
	}
	ne := r.Len(bin.MaxLen)
	for i := 0; i < ne && r.Err == nil; i++ {
		id := r.Uint32()
		if id >= uint32(len(g.names)) {
			return nil, fmt.Errorf("graph snapshot: entity %d is corrupt", i)
		}
		e := g.entity(id)
		nl := r.Len(bin.MaxLen)
		e.life = make([]lifeEvent, nl)
		for j := range e.life {
			le := lifeEvent{stamp: getStamp(r), op: op(r.Uvarint())}
			if na := r.Len(1 << 16); na > 0 {
				le.attrs = make(map[string]string, na)
				for a := 0; a < na; a++ {
					k := r.String()
					le.attrs[k] = r.String()
				}
			}
			e.life[j] = le
		}
		nd := r.Len(bin.MaxLen)
		e.dels = make([]stamp, nd)
		for j := range e.dels {
			e.dels[j] = getStamp(r)
			e.maxDelRec = max(e.maxDelRec, e.dels[j].rec)
		}
	}
	if r.Err != nil {
		return nil, fmt.Errorf("read graph snapshot: %w", r.Err)
	}
	for i := range g.rels {
		g.rels[i].ivs = g.deriveRel(&g.rels[i], forever, nil)
	}
	for _, e := range g.ents {
		if e != nil && len(e.life) > 0 {
			e.status = deriveStatus(e.life, forever, nil)
		}
	}
	return g, nil
}
