package graph

// relIndex finds a relation by its key: open addressing over relation indexes, the keys
// being the relations' own (4 bytes a relation where a map would take some 30).
type relIndex struct {
	slots []int32 // relation index + 1; 0: empty
	n     int
}

func hashKey(k relKey) uint64 {
	h := (uint64(k.a) | uint64(k.b)<<32) * 0x9e3779b97f4a7c15
	h ^= (uint64(k.c) | uint64(k.kind)<<32) * 0xc2b2ae3d27d4eb4f
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	return h ^ h>>32
}

func (x *relIndex) find(rels *relStore, k relKey) (int32, bool) {
	if len(x.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(x.slots) - 1)
	for h := hashKey(k) & mask; ; h = (h + 1) & mask {
		s := x.slots[h]
		if s == 0 {
			return 0, false
		}
		if rels.at(s-1).key() == k {
			return s - 1, true
		}
	}
}

// insert adds relation i, whose key is not in the index yet.
func (x *relIndex) insert(rels *relStore, i int32) {
	if (x.n+1)*4 > len(x.slots)*3 {
		old := x.slots
		x.slots = make([]int32, max(64, 2*len(old)))
		for _, s := range old {
			if s != 0 {
				x.put(rels, s)
			}
		}
	}
	x.put(rels, i+1)
	x.n++
}

func (x *relIndex) put(rels *relStore, s int32) {
	mask := uint64(len(x.slots) - 1)
	h := hashKey(rels.at(s-1).key()) & mask
	for x.slots[h] != 0 {
		h = (h + 1) & mask
	}
	x.slots[h] = s
}

// relStore holds the relations in chunks: growing copies at most the first, still small chunk
// (a large graph never copies its relations, nor leaves their old copies to the collector).
type relStore struct {
	chunks [][]relation
	n      int
	mores  []relMore // the events and intervals of relations with more than one
}

const (
	relChunkBits = 13
	relChunk     = 1 << relChunkBits
)

func (s *relStore) at(i int32) *relation { return &s.chunks[i>>relChunkBits][i&(relChunk-1)] }

func (s *relStore) len() int { return s.n }

func (s *relStore) add(r relation) int32 {
	i := int32(s.n)
	if s.n < relChunk { // the first chunk grows as a slice does: small graphs stay small
		if len(s.chunks) == 0 {
			s.chunks = [][]relation{nil}
		}
		s.chunks[0] = append(s.chunks[0], r)
		s.n++
		return i
	}
	if s.n == len(s.chunks)*relChunk {
		s.chunks = append(s.chunks, make([]relation, relChunk))
	}
	s.n++
	*s.at(i) = r
	return i
}
