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
	w.Uvarint(uint64(g.rels.len()))
	for i := range int32(g.rels.len()) {
		r := g.rels.at(i)
		w.Uvarint(uint64(r.kind))
		w.Uvarint(uint64(r.a))
		w.Uvarint(uint64(r.b))
		w.Uvarint(uint64(r.key().c))
		evs := g.rels.events(r)
		w.Uvarint(uint64(len(evs)))
		for i := range evs {
			e := &evs[i]
			putStamp(w, e.stamp)
			w.Varint(e.expires())
			w.Uvarint(uint64(e.op()))
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
			var kv []string
			g.eachAttr(le.attrs, func(k, v string) { kv = append(kv, k, v) })
			w.Uvarint(uint64(len(kv) / 2))
			for _, s := range kv {
				w.String(s)
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
	for i := 0; i < nr && r.Err == nil; i++ {
		k := relKey{kind: relKind(r.Uvarint()), a: r.Uint32(), b: r.Uint32(), c: r.Uint32()}
		if k.kind < relMember || k.kind > relGrantAction || max(k.a, k.b, k.c) >= uint32(len(g.names)) {
			return nil, fmt.Errorf("graph snapshot: relation %d is corrupt", i)
		}
		ri := g.relation(k)
		ne := r.Len(bin.MaxLen)
		var evs []relEvent
		if ne > 1 {
			evs = make([]relEvent, 0, ne)
		}
		for j := 0; j < ne && r.Err == nil; j++ {
			e := relEvent{stamp: getStamp(r), exp: r.Varint()}
			switch o := op(r.Uvarint()); {
			case o == opRemove:
				e.exp = removeMark
			case o != opAdd && r.Err == nil:
				return nil, fmt.Errorf("graph snapshot: relation %d has a corrupt event", i)
			}
			if ne == 1 {
				rel := g.rels.at(ri)
				rel.ev[0], rel.nev = e, 1
			} else {
				evs = append(evs, e)
			}
		}
		if ne > 1 {
			g.rels.setEvents(g.rels.at(ri), evs)
		}
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
				attrs := make(map[string]string, na)
				for a := 0; a < na; a++ {
					k := r.String()
					attrs[k] = r.String()
				}
				le.attrs = g.packAttrs(attrs)
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
	for i := range int32(g.rels.len()) {
		g.rederive(g.rels.at(i))
	}
	for id, e := range g.ents {
		if e != nil && len(e.life) > 0 {
			g.setStatus(uint32(id), e, deriveStatus(e.life, forever, g.statusBuf[:0]))
		}
	}
	g.ranks() // start ordering the names now, rather than at the first question
	return g, nil
}
